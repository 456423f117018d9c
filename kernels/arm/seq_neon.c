/* neon GELU, Mamba and RWKV kernels: kernels/simd_tmpl.h on float32x4_t. */
#include "kernels/arm/arm.h"
#include "kernels/arm/vec_neon.h"
#define TERN_VNAME(name) name##__neon
#include "kernels/simd_tmpl.h"
