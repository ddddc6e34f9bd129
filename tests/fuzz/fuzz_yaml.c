/*
 * Fuzz target for the YAML loader (libyaml events to jansson values):
 * anchors, aliases, tags, deep nesting and bad syntax must give a value or
 * an error, never a crash, a leak or unbounded growth.
 */
#include <stdint.h>
#include <stdlib.h>

#include "render.h"
#include "yamljson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    json_t *value = yamljson_load_yaml((const char *)data, size, "fuzz", err, sizeof(err));

    if (value) {
        char *text = render_dumps(value, 2);
        free(text);
        json_decref(value);
    }
    return 0;
}
