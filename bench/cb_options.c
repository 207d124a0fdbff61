/* cb_options.c: the load generator's command line. */

#include "cb_bench.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static void
cb_usage(int rc)
{
    fprintf(rc ? stderr : stdout,
"usage: chat_bench [options]\n"
"  --system chat|rabbitmq|nchan|mosquitto|socketio   what is measured\n"
"                                 (chat; socketio: Socket.IO 5 over\n"
"                                 Engine.IO 4, WebSocket transport)\n"
"  --proto stomp|mqtt             the protocol over WebSocket (stomp;\n"
"                                 mosquitto: mqtt, 3.1.1)\n"
"  --qos 0|1                      MQTT: the subscriptions' QoS (1); a\n"
"                                 SEND is a PUBLISH with QoS 1, its\n"
"                                 PUBACK the receipt\n"
"  --scenario density|direct|fanout|storm\n"
"  --host A --port N              the server (127.0.0.1)\n"
"  --ws-path P                    WebSocket path (/ws/chat; rabbitmq /ws,\n"
"                                 mosquitto /mqtt, socketio\n"
"                                 /socket.io/?EIO=4&transport=websocket)\n"
"  --api-path P                   REST prefix (/chat/api)\n"
"  --sub-path P --pub-path P      nchan locations (/sub/ /pub/)\n"
"  --secret S                     JWT HS256 secret (env CHAT_JWT_SECRET)\n"
"  --clients N                    sessions (1000)\n"
"  --group N                      members per conversation (direct: 2)\n"
"  --rate R                       messages/s offered in total (1000)\n"
"  --duration S --warmup S        measured and unmeasured seconds (5, 1)\n"
"  --hold S                       density: seconds idle before measuring\n"
"  --size B                       message content bytes (64)\n"
"  --heartbeat MS                 STOMP heart-beat asked for (10000)\n"
"  --sources N                    source addresses 127.0.0.2.. (8)\n"
"  --inflight N                   connection setups at once (1000)\n"
"  --window N                     unanswered sends at most (0: no limit)\n"
"  --publishers N                 nchan HTTP publisher connections (4)\n"
"  --prefix S                     user/topic name prefix (b<pid>)\n"
"  --rss-master PID               count RSS/CPU of PID's children\n"
"  --rss-pid PID                  count RSS/CPU of PID (and CPU of its "
"children)\n"
"  --cpu-pid PID                  count CPU of PID as auxiliary\n"
"  --connect-timeout S            give up on setup after S (120)\n"
"  --max-time S                   hard stop (600)\n"
"  --no-prime                     ngx_chat direct/fanout: no first message\n"
"                                 per conversation before the warm-up\n"
"  --procs N                      load-generator processes, each over a\n"
"                                 slice of the users, sharing --inflight,\n"
"                                 --window and --publishers (1)\n"
"  --label S --json FILE          the results' label and JSON file\n"
"  --sweep R1,R2,...              direct/fanout: offered rates (msg/s) one\n"
"                                 after the other over the same sessions,\n"
"                                 --warmup and --duration each; stops at\n"
"                                 the first that fails (docs/BENCHMARKS.md)\n"
"  --limit-ms MS                  --sweep: p99 a step must stay under (50)\n");
    exit(rc);
}


void
cb_options(int argc, char **argv)
{
    int                  o, idx;
    char                *p, *end;
    static char          prefix[32];
    static struct option  opts[] = {
        { "system", 1, NULL, 'S' },      { "scenario", 1, NULL, 's' },
        { "host", 1, NULL, 'h' },        { "port", 1, NULL, 'p' },
        { "ws-path", 1, NULL, 'w' },     { "api-path", 1, NULL, 'a' },
        { "sub-path", 1, NULL, 'u' },    { "pub-path", 1, NULL, 'P' },
        { "secret", 1, NULL, 'k' },      { "clients", 1, NULL, 'n' },
        { "group", 1, NULL, 'g' },       { "rate", 1, NULL, 'r' },
        { "duration", 1, NULL, 'd' },    { "warmup", 1, NULL, 'W' },
        { "hold", 1, NULL, 'H' },        { "size", 1, NULL, 'z' },
        { "heartbeat", 1, NULL, 'b' },   { "sources", 1, NULL, 'o' },
        { "inflight", 1, NULL, 'i' },    { "window", 1, NULL, 'x' },
        { "publishers", 1, NULL, 'B' },  { "prefix", 1, NULL, 'f' },
        { "rss-master", 1, NULL, 'M' },  { "rss-pid", 1, NULL, 'R' },
        { "cpu-pid", 1, NULL, 'C' },     { "connect-timeout", 1, NULL, 'T' },
        { "max-time", 1, NULL, 'm' },    { "label", 1, NULL, 'l' },
        { "json", 1, NULL, 'j' },        { "procs", 1, NULL, 'N' },
        { "no-prime", 0, NULL, 'Q' },    { "help", 0, NULL, '?' },
        { "sweep", 1, NULL, 'y' },       { "limit-ms", 1, NULL, 'L' },
        { "proto", 1, NULL, 'Y' },       { "qos", 1, NULL, 'q' },
        { NULL, 0, NULL, 0 }
    };

    cf.system = CB_SYS_CHAT;
    cf.proto = -1;
    cf.qos = 1;
    cf.scenario = CB_SC_DIRECT;
    cf.host = "127.0.0.1";
    cf.port = 8080;
    cf.ws_path = NULL;
    cf.api_path = "/chat/api";
    cf.sub_path = "/sub/";
    cf.pub_path = "/pub/";
    cf.secret = getenv("CHAT_JWT_SECRET");
    cf.clients = 1000;
    cf.group = 0;
    cf.rate = 1000;
    cf.duration = 5;
    cf.warmup = 1;
    cf.hold = 3;
    cf.size = 64;
    cf.hb_ms = 10000;
    cf.sources = 8;
    cf.inflight = 1000;
    cf.window = 0;
    cf.pubs = 4;
    cf.connect_timeout = 120;
    cf.max_time = 600;
    cf.prime = 1;
    cf.procs = 1;
    cf.child = -1;
    cf.limit_ms = 50;

    snprintf(prefix, sizeof(prefix), "b%ld", (long) getpid());
    cf.prefix = prefix;

    while ((o = getopt_long(argc, argv, "", opts, &idx)) != -1) {
        switch (o) {
        case 'S':
            if (strcmp(optarg, "chat") == 0
                || strcmp(optarg, "ngx_chat") == 0)
            {
                cf.system = CB_SYS_CHAT;
            } else if (strncmp(optarg, "rabbit", 6) == 0) {
                cf.system = CB_SYS_RABBIT;
            } else if (strcmp(optarg, "nchan") == 0) {
                cf.system = CB_SYS_NCHAN;
            } else if (strncmp(optarg, "mosquitto", 4) == 0) {
                cf.system = CB_SYS_MOSQ;
            } else if (strcmp(optarg, "socketio") == 0
                       || strcmp(optarg, "socket.io") == 0)
            {
                cf.system = CB_SYS_SIO;
            } else {
                cb_usage(2);
            }
            break;
        case 's':
            if (strcmp(optarg, "density") == 0) {
                cf.scenario = CB_SC_DENSITY;
            } else if (strcmp(optarg, "direct") == 0) {
                cf.scenario = CB_SC_DIRECT;
            } else if (strcmp(optarg, "fanout") == 0) {
                cf.scenario = CB_SC_FANOUT;
            } else if (strcmp(optarg, "storm") == 0) {
                cf.scenario = CB_SC_STORM;
            } else {
                cb_usage(2);
            }
            break;
        case 'h': cf.host = optarg; break;
        case 'p': cf.port = atoi(optarg); break;
        case 'w': cf.ws_path = optarg; break;
        case 'a': cf.api_path = optarg; break;
        case 'u': cf.sub_path = optarg; break;
        case 'P': cf.pub_path = optarg; break;
        case 'k': cf.secret = optarg; break;
        case 'n': cf.clients = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'g': cf.group = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'r': cf.rate = strtod(optarg, NULL); break;
        case 'd': cf.duration = strtod(optarg, NULL); break;
        case 'W': cf.warmup = strtod(optarg, NULL); break;
        case 'H': cf.hold = strtod(optarg, NULL); break;
        case 'z': cf.size = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'b': cf.hb_ms = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'o': cf.sources = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'i': cf.inflight = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'x': cf.window = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'B': cf.pubs = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'f': cf.prefix = optarg; break;
        case 'M':
            if (cf.n_master < CB_MAX_PIDS) {
                cf.rss_master[cf.n_master++] = atoi(optarg);
            }
            break;
        case 'R':
            if (cf.n_rss < CB_MAX_PIDS) {
                cf.rss_pid[cf.n_rss++] = atoi(optarg);
            }
            break;
        case 'C':
            if (cf.n_cpu < CB_MAX_PIDS) {
                cf.cpu_pid[cf.n_cpu++] = atoi(optarg);
            }
            break;
        case 'T': cf.connect_timeout = strtod(optarg, NULL); break;
        case 'm': cf.max_time = atoi(optarg); break;
        case 'Q': cf.prime = 0; break;
        case 'Y':
            if (strcmp(optarg, "stomp") == 0) {
                cf.proto = CB_PROTO_STOMP;
            } else if (strcmp(optarg, "mqtt") == 0) {
                cf.proto = CB_PROTO_MQTT;
            } else {
                cb_usage(2);
            }
            break;
        case 'q':
            cf.qos = atoi(optarg);
            if (cf.qos < 0 || cf.qos > 1) {
                cb_usage(2);
            }
            break;
        case 'l': cf.label = optarg; break;
        case 'j': cf.json = optarg; break;
        case 'N': cf.procs = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'L': cf.limit_ms = strtod(optarg, NULL); break;
        case 'y':
            cf.n_sweep = 0;
            for (p = optarg; *p; p = end + (*end == ',')) {
                if (cf.n_sweep == CB_MAX_STEPS) {
                    cb_die("--sweep: at most %d rates", CB_MAX_STEPS);
                }
                cf.sweep[cf.n_sweep] = strtod(p, &end);
                if (end == p || (*end != ',' && *end != '\0')
                    || cf.sweep[cf.n_sweep] <= 0)
                {
                    cb_die("--sweep: rates > 0, comma-separated: \"%s\"",
                           optarg);
                }
                cf.n_sweep++;
            }
            break;
        case '?':
        default:
            cb_usage(o == '?' && optind > 0
                     && strcmp(argv[optind - 1], "--help") == 0 ? 0 : 2);
        }
    }

    if (cf.proto == -1) {
        cf.proto = cf.system == CB_SYS_MOSQ ? CB_PROTO_MQTT
                   : cf.system == CB_SYS_SIO ? CB_PROTO_SIO : CB_PROTO_STOMP;
    }

    if (cf.system == CB_SYS_SIO && cf.proto != CB_PROTO_SIO) {
        cb_die("--system socketio speaks Socket.IO only");
    }

    if (cf.proto == CB_PROTO_MQTT && cf.system != CB_SYS_MOSQ) {
        cb_die("--proto mqtt: only with --system mosquitto");
    }

    if (cf.proto != CB_PROTO_MQTT && cf.system == CB_SYS_MOSQ) {
        cb_die("--system mosquitto speaks MQTT only");
    }

    if (cf.ws_path == NULL) {
        cf.ws_path = cf.system == CB_SYS_RABBIT ? "/ws"
                     : cf.system == CB_SYS_MOSQ ? "/mqtt"
                     : cf.system == CB_SYS_SIO
                     ? "/socket.io/?EIO=4&transport=websocket" : "/ws/chat";
    }

    if (cf.system == CB_SYS_CHAT && (cf.secret == NULL || *cf.secret == 0)) {
        cb_die("--secret or CHAT_JWT_SECRET is needed for ngx_chat");
    }

    if (cf.clients == 0 || cf.size > 4000 || cf.size < 24) {
        cb_die("bad --clients or --size (24..4000)");
    }

    if (cf.scenario == CB_SC_DIRECT) {
        cf.group = 2;

    } else if (cf.scenario != CB_SC_FANOUT) {
        cf.group = 1;

    } else if (cf.group == 0) {
        cf.group = 10;
    }

    if (cf.system == CB_SYS_NCHAN && cf.scenario != CB_SC_FANOUT) {
        cb_die("nchan: only the fanout scenario (raw WebSocket pub/sub)");
    }

    if (cf.clients % cf.group) {
        cf.clients -= cf.clients % cf.group;
        if (cf.clients == 0) {
            cb_die("fewer clients than one group");
        }
    }

    if (cf.procs == 0 || cf.procs > 64 || cf.procs > cf.clients) {
        cb_die("--procs: 1..64, at most one per client");
    }

    if (cf.n_sweep) {
        if (cf.scenario != CB_SC_DIRECT && cf.scenario != CB_SC_FANOUT) {
            cb_die("--sweep: direct or fanout");
        }
        if (cf.limit_ms <= 0) {
            cb_die("--limit-ms: > 0");
        }
        cf.rate = cf.sweep[0];
    }

    if (cf.group > 1001) {
        cb_die("--group: at most 1001 (the API's limit)");
    }
}
