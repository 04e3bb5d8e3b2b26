/*
 * agent_client_test.c - the service-side client of kabar-agent's socket,
 * against a fake agent (a ROUTER in a thread): ids are added to JSON
 * events before sending, rejections come back with their code, a missing
 * agent and a silent one are reported, and a late reply to a request that
 * timed out is never taken for the next request's.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <zmq.h>

#include "kabar_agent.h"

static char dir[256];
static void *ctx, *router;
static pthread_t th;

/* The fake agent: answers 5 requests, then stops. */
static void *fake_agent(void *arg)
{
    zmq_msg_t held[2];
    bool holding = false;
    for (int n = 0; n < 5; n++) {
        zmq_msg_t f[3];
        for (int i = 0; i < 3; i++) {
            zmq_msg_init(&f[i]);
            if (zmq_msg_recv(&f[i], router, 0) < 0)
                return NULL;
        }
        json_t *ev = json_loadb(zmq_msg_data(&f[2]), zmq_msg_size(&f[2]), 0, NULL);
        const char *id = json_string_value(json_object_get(ev, "id"));
        const char *type = json_string_value(json_object_get(ev, "type"));
        char reply[512];
        if (type != NULL && strcmp(type, "slow") == 0) {
            /* Keep it: answered late, after the next request arrived. */
            held[0] = f[0];
            held[1] = f[1];
            holding = true;
            zmq_msg_close(&f[2]);
            json_decref(ev);
            continue;
        }
        if (holding) {
            zmq_msg_send(&held[0], router, ZMQ_SNDMORE);
            zmq_msg_send(&held[1], router, ZMQ_SNDMORE);
            const char *late = "{\"ok\":true,\"id\":\"late\",\"pos\":999}";
            zmq_send(router, late, strlen(late), 0);
            holding = false;
        }
        if (type != NULL && strcmp(type, "bad") == 0)
            snprintf(reply, sizeof reply,
                     "{\"ok\":false,\"error\":\"MISSING_FIELD\",\"message\":\"body.due: "
                     "required field missing\"}");
        else
            snprintf(reply, sizeof reply, "{\"ok\":true,\"id\":\"%s\",\"pos\":%d}", id ? id : "",
                     n + 1);
        json_decref(ev);
        zmq_msg_send(&f[0], router, ZMQ_SNDMORE);
        zmq_msg_send(&f[1], router, ZMQ_SNDMORE);
        zmq_send(router, reply, strlen(reply), 0);
        zmq_msg_close(&f[2]);
    }
    return NULL;
}

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/agent-client-test-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char ep[300];
    snprintf(ep, sizeof ep, "ipc://%s/agent.sock", dir);
    ctx = zmq_ctx_new();
    router = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(router, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_bind(router, ep), 0);
    return pthread_create(&th, NULL, fake_agent, NULL);
}

static int teardown(void **state)
{
    pthread_join(th, NULL);
    zmq_close(router);
    zmq_ctx_term(ctx);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_submit(void **state)
{
    kabar_agent *a = NULL;
    kabar_error e;
    kabar_agent_receipt r;
    assert_int_equal(kabar_agent_connect(&a, dir, 500, &e), 0);

    const char *with_id = "{\"id\":\"x-1\",\"type\":\"t\"}";
    assert_int_equal(kabar_agent_submit(a, with_id, strlen(with_id), &r, &e), 0);
    assert_string_equal(r.id, "x-1");
    assert_int_equal(r.pos, 1);

    /* No id: one is made here and is what the agent saw. */
    const char *no_id = "  {\"type\":\"t\"}";
    assert_int_equal(kabar_agent_submit(a, no_id, strlen(no_id), &r, &e), 0);
    assert_int_equal(strlen(r.id), 36);
    assert_int_equal(r.pos, 2);

    /* Silent: times out, with the id known. */
    const char *slow = "{\"type\":\"slow\"}";
    assert_int_equal(kabar_agent_submit(a, slow, strlen(slow), &r, &e), KABAR_TIMEOUT);
    assert_int_equal(strlen(r.id), 36);
    assert_non_null(strstr(e.message, "did not answer"));

    /* The late reply to "slow" arrives first and is skipped. */
    const char *bad = "{\"id\":\"x-3\",\"type\":\"bad\"}";
    assert_int_equal(kabar_agent_submit(a, bad, strlen(bad), &r, &e), KABAR_MISSING_FIELD);
    assert_string_equal(e.message, "body.due: required field missing");

    assert_int_equal(kabar_agent_submit(a, "{bad", 4, &r, &e), KABAR_BAD_JSON); /* not sent */
    assert_int_equal(kabar_agent_submit(a, with_id, strlen(with_id), &r, &e), 0);
    assert_int_equal(r.pos, 5);
    kabar_agent_close(&a);
    assert_null(a);
}

static void test_no_agent(void **state)
{
    kabar_agent *a = NULL;
    kabar_error e;
    assert_int_equal(kabar_agent_connect(&a, "/nonexistent/agent-dir", 0, &e), KABAR_CONNECT);
    assert_null(a);
    assert_non_null(strstr(e.message, "is kabar-agent running"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_submit, setup, teardown),
        cmocka_unit_test(test_no_agent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
