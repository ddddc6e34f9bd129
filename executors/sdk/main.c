/*
 * drover_executor_main(): the command line of every executor built on the
 * SDK, signal handling, the state directory, start-up and shutdown.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "drover/version.h"
#include "sdk_internal.h"

/* Default capacity: flow runs mostly wait on I/O, so four per CPU. */
#define MAIN_RUNS_PER_CPU 4

/* The alphabet of Z85, the text form of CURVE keys. */
#define MAIN_Z85 "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"

static int main_signal_fd = -1;

int64_t sdk_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void main_on_signal(int sig)
{
    unsigned char b = (unsigned char)sig;
    int saved = errno;

    if (main_signal_fd >= 0 && write(main_signal_fd, &b, 1) < 0) {
        /* A full pipe already holds a pending stop request. */
    }
    errno = saved;
}

static int main_setup_signals(struct drover_executor *ex)
{
    struct sigaction sa;

    if (pipe(ex->signal_pipe) < 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(ex->signal_pipe[i], F_SETFL, fcntl(ex->signal_pipe[i], F_GETFL) | O_NONBLOCK);
        fcntl(ex->signal_pipe[i], F_SETFD, FD_CLOEXEC);
    }
    main_signal_fd = ex->signal_pipe[1];

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = main_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    return 0;
}

static void main_usage(FILE *out, const char *argv0, const struct drover_describe *d)
{
    fprintf(out,
            "usage: %s --connect ENDPOINT [options]\n"
            "       %s --describe\n"
            "\n"
            "drover executor of type %s: runs flow runs that a drover supervisor sends.\n"
            "\n"
            "  --connect ENDPOINT          supervisor endpoint, e.g. ipc:///run/drover/pool.sock\n"
            "                              or tcp://10.0.0.5:7411\n"
            "  --id ID                     executor id, [A-Za-z0-9._:-] up to 128 characters\n"
            "                              (default %s-<hostname>-<pid>; give a stable id to\n"
            "                              re-adopt runs after a restart)\n"
            "  --capacity N                runs at once, 1..65535 (default %d per online CPU)\n"
            "  --state-dir DIR             where run records are kept, in DIR/<id>\n"
            "                              (default $XDG_RUNTIME_DIR/drover, else /tmp/drover-<uid>)\n"
            "  --curve-server-key KEY|FILE the supervisor's CURVE public key (40 Z85 characters),\n"
            "                              or a file holding it\n"
            "  --curve-secret-key-file FILE  file holding this executor's CURVE secret key (Z85,\n"
            "                              as 'drover keygen' writes it); never give it on the\n"
            "                              command line\n"
            "  --trace                     log every protocol message as 'src -> dst TYPE size'\n"
            "  --describe                  print the declared job configuration schema and exit\n"
            "  --help                      print this help and exit\n",
            argv0, argv0, d->type, d->type, MAIN_RUNS_PER_CPU);
}

static int main_valid_id(const char *id)
{
    size_t n = strlen(id);

    if (n == 0 || n > DROVER_MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)id[i]) || strchr("._:-", id[i])))
            return 0;
    return 1;
}

static void main_default_id(struct drover_executor *ex)
{
    char host[DROVER_MAX_NAME + 1];
    size_t j = 0;

    for (size_t i = 0; ex->hostname[i] && j < 64; i++) {
        char c = ex->hostname[i];
        host[j++] = (isalnum((unsigned char)c) || c == '.' || c == '-') ? c : '_';
    }
    host[j] = '\0';
    snprintf(ex->id, sizeof ex->id, "%s-%s-%ld", ex->type, j ? host : "host", (long)getpid());
}

static unsigned main_default_capacity(const struct drover_executor_ops *ops)
{
    long cpus;

    if (ops->default_capacity)
        return ops->default_capacity > DROVER_MAX_CAPACITY ? DROVER_MAX_CAPACITY : ops->default_capacity;
    cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    return cpus * MAIN_RUNS_PER_CPU > (long)DROVER_MAX_CAPACITY ? DROVER_MAX_CAPACITY
                                                                  : (unsigned)(cpus * MAIN_RUNS_PER_CPU);
}

/* Reads a Z85 CURVE key from the first line of a file that is neither empty
 * nor a '#' comment (the format of 'drover keygen').  The key itself never
 * appears in an error. */
static int main_read_key(const char *path, char key[41], char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char line[256];
    int rc = -1;

    if (!f) {
        snprintf(err, errlen, "cannot open key file %s: %s", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        char *p = line, *end;

        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        end = p + strlen(p);
        while (end > p && isspace((unsigned char)end[-1]))
            *--end = '\0';
        if (strlen(p) != 40 || strspn(p, MAIN_Z85) != 40) {
            snprintf(err, errlen, "key file %s: expected a 40-character Z85 key on its first line", path);
            break;
        }
        memcpy(key, p, 41);
        rc = 0;
        break;
    }
    if (rc < 0 && !err[0])
        snprintf(err, errlen, "key file %s holds no key", path);
    explicit_bzero(line, sizeof line);
    fclose(f);
    return rc;
}

static int main_setup_curve(struct drover_executor *ex, const char *server_file, const char *secret_file,
                            char *err, size_t errlen)
{
    struct stat st;

    if (!server_file && !secret_file)
        return 0;
    if (!server_file || !secret_file) {
        snprintf(err, errlen, "CURVE needs both --curve-server-key and --curve-secret-key-file");
        return -1;
    }
    if (!zmq_has("curve")) {
        snprintf(err, errlen, "this libzmq was built without CURVE support");
        return -1;
    }
    if (stat(secret_file, &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)))
        sdk_logf(ex, NULL, "warning secret_key_file=%s is readable by others (chmod 600 it)", secret_file);
    /* The server key is public, so it may be given itself instead of a file. */
    if (strlen(server_file) == 40 && strspn(server_file, MAIN_Z85) == 40 && access(server_file, F_OK) != 0)
        memcpy(ex->curve_server, server_file, 41);
    else if (main_read_key(server_file, ex->curve_server, err, errlen) < 0)
        return -1;
    if (main_read_key(secret_file, ex->curve_secret, err, errlen) < 0)
        return -1;
    if (zmq_curve_public(ex->curve_public, ex->curve_secret) < 0) {
        snprintf(err, errlen, "key file %s: not a valid CURVE secret key", secret_file);
        return -1;
    }
    ex->curve = 1;
    return 0;
}

static int main_mkdirs(const char *path, char *err, size_t errlen)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof buf) {
        snprintf(err, errlen, "invalid state directory %.800s", path);
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;

            *p = '\0';
            if (mkdir(buf, 0700) < 0 && errno != EEXIST) {
                snprintf(err, errlen, "cannot create state directory %.800s: %s", buf, strerror(errno));
                return -1;
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return 0;
}

/* Creates <base>/<id> and locks it, so that two executors with one id never
 * share run records. */
static int main_setup_state(struct drover_executor *ex, const char *base, char *err, size_t errlen)
{
    char def[PATH_MAX], path[PATH_MAX], lock[PATH_MAX + 8];
    const char *xdg = getenv("XDG_RUNTIME_DIR");

    if (!base) {
        if (xdg && xdg[0] == '/')
            snprintf(def, sizeof def, "%s/drover", xdg);
        else
            snprintf(def, sizeof def, "/tmp/drover-%ld", (long)getuid());
        base = def;
    }
    if ((size_t)snprintf(path, sizeof path, "%s/%s", base, ex->id) >= sizeof path) {
        snprintf(err, errlen, "state directory path %.800s/%s is too long", base, ex->id);
        return -1;
    }
    if (main_mkdirs(path, err, errlen) < 0)
        return -1;
    ex->state_dir = strdup(path);
    snprintf(lock, sizeof lock, "%s/lock", path);
    ex->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (!ex->state_dir || ex->lock_fd < 0) {
        snprintf(err, errlen, "cannot open %.900s: %s", lock, strerror(errno));
        return -1;
    }
    if (flock(ex->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, errlen, "another executor with id %s is using %.800s; give each executor its own --id",
                 ex->id, path);
        return -1;
    }
    ex->locked = 1;
    return 0;
}

struct main_options {
    const char *connect;
    const char *id;
    const char *capacity;
    const char *state_dir;
    const char *curve_server;
    const char *curve_secret;
    int describe;
    int help;
    int trace;
};

/* Accepts "--name value" and "--name=value".  Returns 0, or -1 with a
 * reason in err. */
static int main_parse(int argc, char **argv, struct main_options *o, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        size_t offset;
    } valued[] = {
        {"--connect", offsetof(struct main_options, connect)},
        {"--id", offsetof(struct main_options, id)},
        {"--capacity", offsetof(struct main_options, capacity)},
        {"--state-dir", offsetof(struct main_options, state_dir)},
        {"--curve-server-key", offsetof(struct main_options, curve_server)},
        {"--curve-secret-key-file", offsetof(struct main_options, curve_secret)},
    };

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *eq = strchr(arg, '=');
        size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        size_t k, nvalued = sizeof valued / sizeof valued[0];

        if (strcmp(arg, "--describe") == 0) {
            o->describe = 1;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            o->help = 1;
            continue;
        }
        if (strcmp(arg, "--trace") == 0) {
            o->trace = 1;
            continue;
        }
        for (k = 0; k < nvalued; k++)
            if (strlen(valued[k].name) == nlen && strncmp(arg, valued[k].name, nlen) == 0)
                break;
        if (k == nvalued) {
            snprintf(err, errlen, "unknown option %s (see --help)", arg);
            return -1;
        }
        if (!eq && i + 1 >= argc) {
            snprintf(err, errlen, "option %s needs a value", arg);
            return -1;
        }
        *(const char **)((char *)o + valued[k].offset) = eq ? eq + 1 : argv[++i];
    }
    return 0;
}

static int main_describe(const struct drover_executor_ops *ops)
{
    char err[512];
    json_t *schema = drover_describe_schema(ops->describe, err, sizeof err);

    if (!schema) {
        fprintf(stderr, "invalid describe table: %s\n", err);
        return 1;
    }
    json_dumpf(schema, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
    json_decref(schema);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* Fills ex from the options.  Returns 0, 1 on a fatal error, 2 on a usage error. */
static int main_configure(struct drover_executor *ex, const struct main_options *o, char *err, size_t errlen)
{
    json_t *schema;

    if (!o->connect) {
        snprintf(err, errlen, "--connect ENDPOINT is required (see --help)");
        return 2;
    }
    ex->endpoint = strdup(o->connect);
    ex->trace = o->trace;
    if (gethostname(ex->hostname, sizeof ex->hostname - 1) < 0)
        snprintf(ex->hostname, sizeof ex->hostname, "localhost");
    if (o->id && !main_valid_id(o->id)) {
        snprintf(err, errlen, "invalid --id %s: use 1 to %u of [A-Za-z0-9._:-]", o->id, DROVER_MAX_NAME);
        return 2;
    }
    if (o->id)
        snprintf(ex->id, sizeof ex->id, "%s", o->id);
    else
        main_default_id(ex);

    ex->capacity = main_default_capacity(ex->ops);
    if (o->capacity) {
        char *end;
        unsigned long c = strtoul(o->capacity, &end, 10);

        if (*end || end == o->capacity || c < 1 || c > DROVER_MAX_CAPACITY) {
            snprintf(err, errlen, "invalid --capacity %s: use a number from 1 to %u", o->capacity,
                     DROVER_MAX_CAPACITY);
            return 2;
        }
        ex->capacity = (unsigned)c;
    }

    schema = drover_describe_schema(ex->ops->describe, err, errlen);
    if (!schema)
        return 1;
    ex->schema_text = json_dumps(schema, JSON_COMPACT);
    json_decref(schema);
    if (!ex->schema_text || strlen(ex->schema_text) > DROVER_MAX_SCHEMA) {
        snprintf(err, errlen, "the declared schema is larger than %u bytes", DROVER_MAX_SCHEMA);
        return 1;
    }
    if (main_setup_curve(ex, o->curve_server, o->curve_secret, err, errlen) < 0)
        return 1;
    if (main_setup_state(ex, o->state_dir, err, errlen) < 0)
        return 1;
    return 0;
}

static void main_cleanup(struct drover_executor *ex)
{
    /* A state directory without runs is not needed by a later executor;
     * rmdir fails harmlessly when a file of another run is left in it. */
    int empty = ex->locked && sdk_runs_held(ex) == 0;

    if (ex->ops->shutdown)
        ex->ops->shutdown(ex);
    sdk_runs_release_all(ex);
    if (empty) {
        char lock[PATH_MAX + 8];

        snprintf(lock, sizeof lock, "%s/lock", ex->state_dir);
        unlink(lock);
        rmdir(ex->state_dir);
    }
    if (ex->sock)
        zmq_close(ex->sock);
    if (ex->zctx)
        zmq_ctx_term(ex->zctx);
    main_signal_fd = -1;
    for (int i = 0; i < 2; i++)
        if (ex->signal_pipe[i] >= 0)
            close(ex->signal_pipe[i]);
    if (ex->lock_fd >= 0)
        close(ex->lock_fd);
    explicit_bzero(ex->curve_secret, sizeof ex->curve_secret);
    free(ex->schema_text);
    free(ex->state_dir);
    free(ex->endpoint);
}

int drover_executor_main(int argc, char **argv, const struct drover_executor_ops *ops)
{
    struct drover_executor ex = {.ops = ops, .lock_fd = -1, .signal_pipe = {-1, -1}};
    struct main_options o = {0};
    char err[1024] = "";
    int rc;

    ex.argv0 = argc > 0 ? argv[0] : "drover-executor";
    if (!ops || !ops->describe || !ops->start || !ops->kill) {
        fprintf(stderr, "%s: the executor's ops lack describe, start or kill\n", ex.argv0);
        return 1;
    }
    snprintf(ex.type, sizeof ex.type, "%s", ops->describe->type ? ops->describe->type : "");
    if (main_parse(argc, argv, &o, err, sizeof err) < 0) {
        fprintf(stderr, "%s: %s\n", ex.argv0, err);
        return 2;
    }
    if (o.help) {
        main_usage(stdout, ex.argv0, ops->describe);
        return 0;
    }
    if (o.describe)
        return main_describe(ops);

    rc = main_configure(&ex, &o, err, sizeof err);
    if (rc != 0) {
        sdk_logf(&ex, NULL, "start_failed error=\"%s\"", err);
        goto done;
    }
    if (main_setup_signals(&ex) < 0 || !(ex.zctx = zmq_ctx_new())) {
        sdk_logf(&ex, NULL, "start_failed error=\"%s\"", strerror(errno));
        rc = 1;
        goto done;
    }
    sdk_logf(&ex, NULL, "start version=%s type=%s endpoint=%s capacity=%u state_dir=%s curve=%s",
             DROVER_VERSION, ex.type, ex.endpoint, ex.capacity, ex.state_dir, ex.curve ? "on" : "off");
    if (ops->init && ops->init(&ex, err, sizeof err) < 0) {
        sdk_logf(&ex, NULL, "init_failed error=\"%s\"", err);
        rc = 1;
        goto done;
    }
    sdk_runs_recover(&ex);
    rc = sdk_loop_run(&ex);
    sdk_logf(&ex, NULL, "stop exit_status=%d runs=%u malformed_dropped=%lu logs_dropped=%lu send_failures=%lu",
             rc, sdk_runs_active(&ex), ex.malformed, ex.logs_dropped, ex.send_failures);
done:
    main_cleanup(&ex);
    return rc;
}

const char *drover_executor_state_dir(const struct drover_executor *ex) { return ex->state_dir; }
const char *drover_executor_id(const struct drover_executor *ex) { return ex->id; }
const char *drover_executor_argv0(const struct drover_executor *ex) { return ex->argv0; }
