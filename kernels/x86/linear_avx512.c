/* avx512 linear layers (16-wide FMA): the shared template, zmm tiles of
 * 4 tokens x 6 rows (24 of the 32 registers), 4 x 4 for Q8/Q4, 1 token x 4
 * rows for GEMV. */
#define TERN_X86_VW 16
#define TERN_X86_ISA avx512
#define TERN_X86_MR 4
#define TERN_X86_NR_DENSE 6
#define TERN_X86_NR_QUANT 4
#define TERN_X86_NR_GEMV 4
#include "kernels/x86/linear_tmpl.h"
