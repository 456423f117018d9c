/* avx2 GELU, Mamba and RWKV kernels: kernels/simd_tmpl.h on the ymm layer. */
#define TERN_X86_VW 8
#define TERN_X86_ISA avx2
#include "kernels/x86/vec.h"
#include "kernels/x86/x86.h"
#define TERN_VNAME(name) TERN_X86_NAME(name)
#include "kernels/simd_tmpl.h"
