/* Standalone `drover-render` for the renderer's tests: `drover render`
 * without the supervisor around it. */
#include "render.h"

int main(int argc, char **argv)
{
    argv[0] = "render";
    return render_cli_main(argc, argv);
}
