/* avx2 row kernels and attention: the shared template on ymm. */
#define TERN_X86_VW 8
#define TERN_X86_ISA avx2
#include "kernels/x86/rows_tmpl.h"
