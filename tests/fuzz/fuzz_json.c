/*
 * Fuzz target for the renderer's JSON handling: the file loader, the
 * canonical dump (Python's json.dumps form) and Python's str() text.  The
 * dump of any value must parse back to an equal value.
 */
#include <stdint.h>
#include <stdlib.h>

#include "render.h"
#include "yamljson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    json_t *value = yamljson_loads((const char *)data, size, "fuzz", err, sizeof(err));
    char *text;

    if (!value)
        return 0;
    text = render_dumps(value, 2);
    if (text) {
        json_t *back = json_loads(text, JSON_DECODE_ANY, NULL);

        if (!back || !json_equal(back, value))
            abort(); /* the canonical dump must read back unchanged */
        json_decref(back);
        free(text);
    }
    text = render_dumps(value, -1);
    free(text);
    text = render_pytext(value);
    free(text);
    json_decref(value);
    return 0;
}
