/* neon (ARMv8.0) N:M sparse integer linear layer: 2:4 and 1:4 Q8/Q4 tiles
 * (linear_nmt_tmpl.h, smull + sadalp); every other sparse matrix runs the
 * ref. AArch64 only: 32-bit NEON has no 16-byte tbl. */
#include "kernels/arm/arm.h"

#if defined(__aarch64__)
#include "kernels/ref/ref.h"

#include "kernels/arm/linear_nmt_tmpl.h"

void tern_qs8_nmt_linear_ukernel_16x4__neon(size_t m, size_t r0, size_t r1, const tern_qrows *x,
                                            const tern_weight *w, const float *bias, float *y,
                                            size_t ldy) {
    if (tern_nmt_runs(w)) tern_nmt_linear(m, r0, r1, x, w, bias, y, ldy);
    else tern_qs8_nm_linear_ukernel__ref(m, r0, r1, x, w, bias, y, ldy);
}
#endif
