/* avx512 row kernels and attention: the shared template on zmm. */
#define TERN_X86_VW 16
#define TERN_X86_ISA avx512
#include "kernels/x86/rows_tmpl.h"
