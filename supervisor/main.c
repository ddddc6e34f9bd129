/*
 * The `drover` command: `worker start` runs the supervisor; `template`,
 * `render` and `executor` are the tools around it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <zmq.h>

#include "drover/version.h"
#include "cache.h"
#include "discover.h"
#include "log.h"
#include "render.h"
#include "util.h"
#include "worker.h"

extern char **environ;

static void
usage(FILE *out)
{
    fprintf(out,
        "usage: drover worker start --pool NAME [options]\n"
        "       drover template TYPE\n"
        "       drover render --template FILE [--deployment-vars FILE] [--run-vars FILE] ...\n"
        "       drover executor --list\n"
        "       drover executor TYPE [executor options]\n"
        "       drover keygen SECRET_KEY_FILE\n"
        "       drover --version\n"
        "\n"
        "worker start options (as prefect worker start):\n"
        "  -p, --pool NAME             work pool to serve (required)\n"
        "  -t, --type TYPE             infrastructure type; default: the pool's type, or process\n"
        "  -q, --work-queue NAME       work queue to poll; repeatable; default: all queues\n"
        "  -n, --name NAME             worker name; default: drover-HOSTNAME\n"
        "  -l, --limit N               maximum concurrent flow runs; default: unlimited\n"
        "      --prefetch-seconds N    poll runs scheduled up to N s ahead\n"
        "                              (default PREFECT_WORKER_PREFETCH_SECONDS or 10)\n"
        "      --run-once              claim one batch, wait for its runs, exit\n"
        "      --base-job-template F   template JSON used only when the pool is created\n"
        "      --no-create-pool-if-not-found\n"
        "drover options:\n"
        "      --bind ENDPOINT         also accept executors on ENDPOINT (tcp://HOST:PORT);\n"
        "                              non-loopback endpoints need the two CURVE options\n"
        "      --curve-secret-key-file F  this supervisor's CURVE secret key (Z85, from keygen)\n"
        "      --curve-allow-file F    public keys (Z85, one a line) of executors allowed in\n"
        "      --no-local-executor     do not start a local executor\n"
        "      --executors N           local executor processes (default 1)\n"
        "      --executor-program P    program of the local executor\n"
        "      --state-dir DIR         state of local executors (default $XDG_RUNTIME_DIR/drover)\n"
        "      --lost-grace-seconds N  wait for a silent executor before its runs crash (60)\n"
        "      --drain-seconds N       longest drain on SIGTERM (30)\n"
        "      --no-run-labels         do not add the worker and work pool labels to flow runs\n"
        "      --no-submitting-state   do not propose the Pending \"Submitting\" state before a start\n"
        "                              (each saves one API write per run on a busy server)\n"
        "      --trace                 log every protocol message\n"
        "      --debug                 log debug lines\n"
        "environment: PREFECT_API_URL (required), PREFECT_API_KEY, PREFECT_API_AUTH_STRING,\n"
        "  PREFECT_WORKER_HEARTBEAT_SECONDS (30), PREFECT_WORKER_QUERY_SECONDS (10),\n"
        "  PREFECT_WORKER_PREFETCH_SECONDS (10), PREFECT_API_SSL_CERT_FILE,\n"
        "  PREFECT_API_TLS_INSECURE_SKIP_VERIFY\n");
}

static double
env_seconds(const char *name, double fallback)
{
    const char *v = getenv(name);
    char *end;
    double d;

    if (v == NULL || *v == '\0')
        return fallback;
    d = strtod(v, &end);
    if (*end != '\0' || d <= 0 || d > 86400)
        fatalx("%s=%s is not a number of seconds above 0 and at most 86400; fix or unset it", name, v);
    return d;
}

static int
parse_int(const char *opt, const char *v, int min, int max)
{
    char *end;
    long n;

    errno = 0;
    n = strtol(v, &end, 10);
    if (errno || *end != '\0' || n < min || n > max)
        fatalx("%s %s: expected a whole number from %d to %d", opt, v, min, max);
    return (int)n;
}

static int
env_true(const char *name)
{
    const char *v = getenv(name);

    return v && (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcasecmp(v, "yes") == 0);
}

/* ---- executor programs ----------------------------------------------- */

char *
worker_find_executor(const char *type)
{
    return discover_find(type);
}

/* Prints each installed executor type, the first found in search order. */
int
executor_list(void)
{
    struct discover_entry *entries = NULL;
    size_t n = 0;
    char err[512];

    if (discover_list(&entries, &n, err, sizeof err) == -1) {
        fprintf(stderr, "drover: %s\n", err);
        return 1;
    }
    if (n == 0) {
        fprintf(stderr, "drover: no executor programs (drover-executor-TYPE) found beside drover, in %s or on PATH\n",
                DROVER_LIBEXECDIR);
        discover_free(&entries, n);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        const struct discover_entry *e = &entries[i];

        printf("%s\n  program: %s\n", e->type, e->path);
        if (e->error) {
            printf("  error: %s\n", e->error);
            continue;
        }
        if (*e->description)
            printf("  description: %s\n", e->description);
        if (*e->documentation_url)
            printf("  documentation: %s\n", e->documentation_url);
    }
    discover_free(&entries, n);
    return 0;
}

/* ---- drover template / executor ---------------------------------------- */

static int
cmd_template(int argc, char **argv)
{
    char err[1024];
    char *program;
    json_t *schema, *template;

    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: drover template TYPE\n");
        return 2;
    }
    if ((program = worker_find_executor(argv[1])) == NULL) {
        fprintf(stderr, "drover: no executor program for type '%s' (drover-executor-%s); see 'drover executor --list'\n",
                argv[1], argv[1]);
        return 1;
    }
    schema = discover_schema(program, err, sizeof err);
    free(program);
    if (schema == NULL) {
        fprintf(stderr, "drover: %s\n", err);
        return 1;
    }
    template = render_default_template(schema, err, sizeof err);
    json_decref(schema);
    if (template == NULL) {
        fprintf(stderr, "drover: executor type '%s' declares an invalid schema: %s\n", argv[1], err);
        return 1;
    }
    json_dumpf(template, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
    json_decref(template);
    return 0;
}

static int
cmd_executor(int argc, char **argv)
{
    char *program;

    if (argc >= 2 && strcmp(argv[1], "--list") == 0)
        return executor_list();
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: drover executor --list | drover executor TYPE [options]\n");
        return 2;
    }
    if ((program = worker_find_executor(argv[1])) == NULL) {
        fprintf(stderr, "drover: no executor program for type '%s' (drover-executor-%s); see 'drover executor --list'\n",
                argv[1], argv[1]);
        return 1;
    }
    argv[1] = program;
    execv(program, argv + 1);
    fprintf(stderr, "drover: cannot run %s: %s\n", program, strerror(errno));
    return 1;
}

/* Writes a new CURVE secret key to a file only the user can read, and
 * prints the matching public key. */
static int
cmd_keygen(int argc, char **argv)
{
    char public_key[41], secret_key[41];
    FILE *f;
    int fd;

    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: drover keygen SECRET_KEY_FILE\n");
        return 2;
    }
    if (zmq_curve_keypair(public_key, secret_key) == -1) {
        fprintf(stderr, "drover: this libzmq has no CURVE support: %s\n", zmq_strerror(zmq_errno()));
        return 1;
    }
    if ((fd = open(argv[1], O_WRONLY | O_CREAT | O_EXCL, 0600)) == -1 || (f = fdopen(fd, "w")) == NULL) {
        fprintf(stderr, "drover: cannot create %s: %s (an existing key file is never overwritten)\n",
                argv[1], strerror(errno));
        return 1;
    }
    fprintf(f, "# drover CURVE secret key; public key %s\n%s\n", public_key, secret_key);
    util_wipe(secret_key, sizeof secret_key);
    if (fclose(f) != 0) {
        fprintf(stderr, "drover: cannot write %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    printf("%s\n", public_key);
    return 0;
}

/* ---- drover worker start ---------------------------------------------- */

static json_t *
settings_env(void)
{
    json_t *env = json_object();

    /* Prefect settings the worker runs with reach the flow runs, as with Prefect's workers. */
    for (char **e = environ; env && *e; e++) {
        const char *eq = strchr(*e, '=');
        char key[256];

        if (eq == NULL || strncmp(*e, "PREFECT_", 8) != 0 || strncmp(*e, "PREFECT__", 9) == 0)
            continue;
        if ((size_t)(eq - *e) >= sizeof key)
            continue;
        memcpy(key, *e, (size_t)(eq - *e));
        key[eq - *e] = '\0';
        json_object_set_new(env, key, json_string(eq + 1));
    }
    return env;
}

static int
cmd_worker_start(int argc, char **argv)
{
    enum { O_PREFETCH = 256, O_RUN_ONCE, O_BIND, O_NO_LOCAL, O_EXECUTORS, O_PROGRAM, O_STATE,
           O_TRACE, O_DEBUG, O_TEMPLATE, O_NO_CREATE, O_LOST, O_DRAIN, O_CURVE_KEY, O_CURVE_ALLOW,
           O_NO_LABELS, O_NO_SUBMITTING };
    static const struct option opts[] = {
        { "pool", required_argument, NULL, 'p' },
        { "type", required_argument, NULL, 't' },
        { "work-queue", required_argument, NULL, 'q' },
        { "name", required_argument, NULL, 'n' },
        { "limit", required_argument, NULL, 'l' },
        { "prefetch-seconds", required_argument, NULL, O_PREFETCH },
        { "run-once", no_argument, NULL, O_RUN_ONCE },
        { "bind", required_argument, NULL, O_BIND },
        { "no-local-executor", no_argument, NULL, O_NO_LOCAL },
        { "executors", required_argument, NULL, O_EXECUTORS },
        { "executor-program", required_argument, NULL, O_PROGRAM },
        { "state-dir", required_argument, NULL, O_STATE },
        { "trace", no_argument, NULL, O_TRACE },
        { "debug", no_argument, NULL, O_DEBUG },
        { "base-job-template", required_argument, NULL, O_TEMPLATE },
        { "no-create-pool-if-not-found", no_argument, NULL, O_NO_CREATE },
        { "lost-grace-seconds", required_argument, NULL, O_LOST },
        { "drain-seconds", required_argument, NULL, O_DRAIN },
        { "no-run-labels", no_argument, NULL, O_NO_LABELS },
        { "no-submitting-state", no_argument, NULL, O_NO_SUBMITTING },
        { "curve-secret-key-file", required_argument, NULL, O_CURVE_KEY },
        { "curve-allow-file", required_argument, NULL, O_CURVE_ALLOW },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    static struct worker w;
    struct http_options ho = {0};
    char host[256], err[512], agent[64];
    int c, rc;

    memset(&w, 0, sizeof w);
    w.cfg.heartbeat_s = env_seconds("PREFECT_WORKER_HEARTBEAT_SECONDS", 30);
    w.cfg.query_s = env_seconds("PREFECT_WORKER_QUERY_SECONDS", 10);
    w.cfg.prefetch_s = (int)env_seconds("PREFECT_WORKER_PREFETCH_SECONDS", 10);
    w.cfg.local_executors = 1;
    w.cfg.create_pool = 1;
    w.cfg.ping_interval_ms = 2000;
    w.cfg.liveness_ms = 10000;
    w.cfg.lost_grace_ms = 60000;
    w.cfg.drain_s = 30;
    w.cfg.run_labels = 1;
    w.cfg.submitting_state = 1;

    optind = 1;
    while ((c = getopt_long(argc, argv, "p:t:q:n:l:h", opts, NULL)) != -1) {
        switch (c) {
        case 'p': w.cfg.pool = optarg; break;
        case 't': w.cfg.type = optarg; break;
        case 'q':
            if (w.cfg.nqueues == WORKER_MAX_QUEUES)
                fatalx("--work-queue: at most %d queues", WORKER_MAX_QUEUES);
            w.cfg.queues[w.cfg.nqueues++] = optarg;
            break;
        case 'n': w.cfg.name = optarg; break;
        case 'l': w.cfg.limit = parse_int("--limit", optarg, 1, 1000000); break;
        case O_PREFETCH: w.cfg.prefetch_s = parse_int("--prefetch-seconds", optarg, 0, 86400); break;
        case O_RUN_ONCE: w.cfg.run_once = 1; break;
        case O_BIND:
            if (w.cfg.nbinds == WORKER_MAX_BINDS)
                fatalx("--bind: at most %d endpoints", WORKER_MAX_BINDS);
            w.cfg.binds[w.cfg.nbinds++] = optarg;
            break;
        case O_NO_LOCAL: w.cfg.local_executors = 0; break;
        case O_EXECUTORS: w.cfg.local_executors = parse_int("--executors", optarg, 0, WORKER_MAX_LOCAL); break;
        case O_PROGRAM: w.cfg.executor_program = optarg; break;
        case O_STATE: w.cfg.state_dir = optarg; break;
        case O_TRACE: w.cfg.trace = 1; log_set_trace(1); break;
        case O_DEBUG: log_set_level(LOG_DEBUG); break;
        case O_TEMPLATE: w.cfg.base_job_template_file = optarg; break;
        case O_NO_CREATE: w.cfg.create_pool = 0; break;
        case O_LOST: w.cfg.lost_grace_ms = parse_int("--lost-grace-seconds", optarg, 0, 86400) * 1000; break;
        case O_DRAIN: w.cfg.drain_s = parse_int("--drain-seconds", optarg, 0, 86400); break;
        case O_NO_LABELS: w.cfg.run_labels = 0; break;
        case O_NO_SUBMITTING: w.cfg.submitting_state = 0; break;
        case O_CURVE_KEY: w.cfg.curve_secret_key_file = optarg; break;
        case O_CURVE_ALLOW: w.cfg.curve_allow_file = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "drover: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (w.cfg.pool == NULL || *w.cfg.pool == '\0')
        fatalx("--pool is required: name the work pool this worker serves");
    if (strpbrk(w.cfg.pool, "/%&><") != NULL)
        fatalx("work pool name '%s' contains one of / %% & > <, which Prefect does not allow", w.cfg.pool);
    if ((w.cfg.api_url = getenv("PREFECT_API_URL")) == NULL || *w.cfg.api_url == '\0')
        fatalx("PREFECT_API_URL is not set; set it to the Prefect API, e.g. http://127.0.0.1:4200/api");
    if (strncmp(w.cfg.api_url, "http://", 7) != 0 && strncmp(w.cfg.api_url, "https://", 8) != 0)
        fatalx("PREFECT_API_URL=%s is not an http:// or https:// URL", w.cfg.api_url);
    if (w.cfg.state_dir && *w.cfg.state_dir == '\0')
        fatalx("--state-dir is empty; name a directory for the local executors' run records");
    {
        static const char *const secrets[] = { "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING" };

        for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
            const char *v = getenv(secrets[i]);

            /* A control character would end the Authorization header early. */
            for (; v && *v; v++)
                if ((unsigned char)*v < 0x20 || *v == 0x7f)
                    fatalx("%s contains a control character; set it to the credential alone",
                           secrets[i]);
        }
    }
    if (w.cfg.base_job_template_file && access(w.cfg.base_job_template_file, R_OK) == -1)
        fatalx("--base-job-template %s: %s", w.cfg.base_job_template_file, strerror(errno));
    if (w.cfg.type) {
        if (strlen(w.cfg.type) == 0 || strlen(w.cfg.type) > DROVER_MAX_TYPE ||
            strspn(w.cfg.type, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(w.cfg.type))
            fatalx("--type '%s' is invalid: use 1 to %u of a-z, 0-9, _ and -", w.cfg.type, DROVER_MAX_TYPE);
        util_strlcpy(w.type, w.cfg.type, sizeof w.type);
    }

    if (gethostname(host, sizeof host) == -1)
        strcpy(host, "localhost");
    host[sizeof host - 1] = '\0';
    if (w.cfg.name)
        util_strlcpy(w.name, w.cfg.name, sizeof w.name);
    else
        snprintf(w.name, sizeof w.name, "drover-%.100s", host);
    if (strpbrk(w.name, "/%") != NULL)
        fatalx("worker name '%s' contains / or %%, which Prefect does not allow", w.name);
    w.settings_env = settings_env();

    /* HTTP */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        fatalx("curl_global_init failed");
    snprintf(agent, sizeof agent, "drover/%s", DROVER_VERSION);
    ho.base_url = w.cfg.api_url;
    ho.api_key = getenv("PREFECT_API_KEY");
    ho.auth_string = getenv("PREFECT_API_AUTH_STRING");
    ho.ca_file = getenv("PREFECT_API_SSL_CERT_FILE");
    ho.insecure = env_true("PREFECT_API_TLS_INSECURE_SKIP_VERIFY");
    ho.timeout_ms = (long)(env_seconds("PREFECT_API_REQUEST_TIMEOUT", 60) * 1000);
    ho.user_agent = agent;
    if ((w.http = http_new(&ho, err, sizeof err)) == NULL)
        fatalx("%s", err);
    if (ho.insecure)
        log_warn("event=tls_verification_off reason=\"PREFECT_API_TLS_INSECURE_SKIP_VERIFY is set\"");

    /* ZeroMQ */
    if (peers_open(&w, err, sizeof err) == -1)
        fatalx("%s", err);

    log_info("event=starting version=%s pool=%s api=%s endpoint=%s heartbeat_s=%.0f query_s=%.0f prefetch_s=%d",
             DROVER_VERSION, w.cfg.pool, w.cfg.api_url, w.endpoint, w.cfg.heartbeat_s,
             w.cfg.query_s, w.cfg.prefetch_s);
    rc = worker_run(&w);

    peers_close(&w);
    runs_free_all(&w);
    cache_free_all(&w);
    peers_free_all(&w);
    http_free(&w.http);
    json_decref(w.pool);
    json_decref(w.local_schema);
    json_decref(w.settings_env);
    json_decref(w.log_batch);
    free(w.executor_program);
    curl_global_cleanup();
    return rc;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        int major, minor, patch;

        zmq_version(&major, &minor, &patch);
        printf("drover %s (libzmq %d.%d.%d, %s, jansson %s)\n", DROVER_VERSION, major, minor,
               patch, curl_version(), JANSSON_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "worker") == 0) {
        if (argc < 3 || strcmp(argv[2], "start") != 0) {
            fprintf(stderr, "usage: drover worker start --pool NAME [options]\n");
            return 2;
        }
        return cmd_worker_start(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "template") == 0)
        return cmd_template(argc - 1, argv + 1);
    if (strcmp(argv[1], "render") == 0)
        return render_cli_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "executor") == 0)
        return cmd_executor(argc - 1, argv + 1);
    if (strcmp(argv[1], "keygen") == 0)
        return cmd_keygen(argc - 1, argv + 1);
    fprintf(stderr, "drover: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
