/*
 * event_fuzz.c - fuzz target for the event decoder and the JSON writer.
 *
 * Any input: kabar_event_decode with the built-in registry must return
 * cleanly. When it accepts the input, the event must also decode without a
 * schema to the same envelope, convert to JSON, and that JSON must convert
 * back (kabar_event_from_json) to the very same bytes: canonical form means
 * one event has one encoding. Any inconsistency aborts.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kabar.h"

static void check(int cond, const char *what, const kabar_error *e)
{
    if (!cond) {
        fprintf(stderr, "event_fuzz: %s (%s)\n", what, e ? e->message : "");
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const kabar_schema *s = kabar_schema_builtin();
    kabar_event ev, ev2;
    kabar_error e;
    int rc = kabar_event_decode(s, data, size, &ev, &e);
    if (rc != 0) {
        check(e.code == rc && e.message[0] != '\0', "error without a message", &e);
        return 0;
    }
    check(kabar_event_decode(NULL, data, size, &ev2, &e) == 0, "schema-less decode failed", &e);
    check(ev2.body == ev.body && ev2.body_len == ev.body_len && ev2.v == ev.v &&
              ev2.ntargets == ev.ntargets,
          "schema-less decode differs", NULL);

    kabar_buf json = {0};
    check(kabar_event_to_json(&json, 7, 0, data, size, &e) == 0, "to_json failed", &e);
    /* Without occurred_at, from_json would stamp the time of conversion. */
    if (ev.has_occurred_at) {
        uint8_t *again = NULL;
        size_t n = 0;
        rc = kabar_event_from_json(s, json.data, json.len, NULL, &again, &n, &e);
        if (rc != 0)
            fprintf(stderr, "event_fuzz: JSON %s\n", json.data);
        check(rc == 0, "the JSON of a valid event does not convert back", &e);
        /* The one encoding of an event (a broadcast has no targets key). */
        bool same = n == size && memcmp(again, data, size) == 0;
        if (!same)
            fprintf(stderr, "event_fuzz: JSON %s\n", json.data);
        check(same, "JSON round trip changed the bytes", NULL);
        kabar_buf json2 = {0};
        check(kabar_event_to_json(&json2, 7, 0, again, n, &e) == 0, "to_json failed", &e);
        check(json2.len == json.len && memcmp(json2.data, json.data, json.len) == 0,
              "JSON not stable", NULL);
        kabar_buf_free(&json2);
        free(again);
    }
    kabar_buf_free(&json);
    return 0;
}
