/* Vision sub-commands: classify images, logits of preprocessed pixels. */
#include "cli/cli.h"

int tern_cli_classify(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "tern classify: not built yet\n");
    return 1;
}

int tern_cli_logits_pixels(const run_args *a) {
    (void)a;
    fprintf(stderr, "tern logits --pixels: not built yet\n");
    return 1;
}
