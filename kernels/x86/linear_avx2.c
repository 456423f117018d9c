/* avx2 linear layers (8-wide FMA, F16C): the shared template, ymm tiles of
 * 4 tokens x 3 rows (12 accumulators), 4 x 2 for Q8/Q4 (whose decoded
 * weights take more registers), 1 token x 4 rows for GEMV. */
#define TERN_X86_VW 8
#define TERN_X86_ISA avx2
#define TERN_X86_MR 4
#define TERN_X86_NR_DENSE 3
#define TERN_X86_NR_QUANT 2
#define TERN_X86_NR_GEMV 4
#include "kernels/x86/linear_tmpl.h"
