# bench/bench.mk: build rules of the load generator and the bench target;
# included by the top-level Makefile (which defines BIN, CC, WARN, or not).

BENCH_BIN_DIR ?= $(or $(BIN),build/bin)
BENCH_TOOL     = $(BENCH_BIN_DIR)/chat_bench
BENCH_SRCS     = bench/chat_bench.c bench/cb_stomp.c bench/cb_proc.c \
                 bench/cb_procs.c bench/cb_report.c bench/cb_options.c \
                 bench/cb_hist.c bench/cb_setup.c bench/cb_sweep.c \
                 bench/cb_mqtt.c bench/cb_sio.c
BENCH_HDRS     = bench/cb_bench.h bench/cb_hist.h bench/cb_setup.h
BENCH_WARN    ?= -Wall -Wextra -Werror -Wno-unused-parameter
BENCH_MODULE   = build/nginx/objs/ngx_chat_module.so

# what make bench installs when missing: the systems it compares against
BENCH_DEB_PACKAGES = rabbitmq-server libnginx-mod-nchan mosquitto
# perf: BENCH_PROFILE's profiles (docs/BENCHMARKS.md)
BENCH_DEB_PACKAGES += linux-perf

.PHONY: bench bench-tool bench-deps

BENCH_FLOOR    = $(BENCH_BIN_DIR)/floor

bench-tool: $(BENCH_TOOL) $(BENCH_FLOOR)

# the floor: the same fan-out deliveries with no protocol (bench/floor.c)
$(BENCH_FLOOR): bench/floor.c
	@mkdir -p $(BENCH_BIN_DIR)
	$(CC) -O2 -g $(BENCH_WARN) -D_GNU_SOURCE -o $@ bench/floor.c

$(BENCH_TOOL): $(BENCH_SRCS) $(BENCH_HDRS)
	@mkdir -p $(BENCH_BIN_DIR)
	$(CC) -O2 -g $(BENCH_WARN) -D_GNU_SOURCE -o $@ $(BENCH_SRCS) \
	    $$(pkg-config --cflags --libs openssl)

# the comparison systems are optional: without them their rows are
# missing and the run says why
bench-deps:
	@missing=""; for p in $(BENCH_DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	        | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	    $$sudo apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq \
	        $$missing || echo "warning: could not install$$missing"; \
	fi
	@$(MAKE) --no-print-directory bench-sio-deps

# Socket.IO and its Redis adapter, pinned in bench/socketio/package.json
# (make deps runs this too: t/094-bench-socketio.t needs them)
.PHONY: bench-sio-deps

bench-sio-deps:
	@if command -v npm >/dev/null \
	    && [ ! bench/socketio/node_modules/.package-lock.json \
	         -nt bench/socketio/package-lock.json ]; then \
	    echo "npm ci in bench/socketio (Socket.IO and its Redis adapter)"; \
	    (cd bench/socketio && npm ci --no-audit --no-fund) \
	        || echo "warning: npm ci in bench/socketio failed"; \
	fi

# make bench [BENCH=long]: see docs/BENCHMARKS.md
bench: deps bench-deps
	@$(MAKE) --no-print-directory all bench-tool
	@BENCH=$(or $(BENCH),short) \
	    CHAT_MODULE=$(abspath $(or $(MODULE),$(BENCH_MODULE))) \
	    CHAT_BENCH_BIN=$(abspath $(BENCH_TOOL)) \
	    CHAT_BIN=$(abspath $(BENCH_BIN_DIR)) \
	    bench/run.sh

# make bench-search [SEARCH_ROWS=N]: GET /search's query on N messages
# (1,000,000) in a PostgreSQL of its own; prints timings (docs/BENCHMARKS.md)
.PHONY: bench-search

bench-search: all
	@dir=$(abspath build/bench-search); \
	    scripts/test-servers.sh stop $$dir >/dev/null 2>&1; rm -rf $$dir; \
	    env_lines=$$(scripts/test-servers.sh start $$dir) || exit 1; \
	    eval "$$env_lines"; \
	    perl bench/search.pl --dsn "$$TEST_NGINX_PG_DSN" \
	        --rows $(or $(SEARCH_ROWS),1000000); rc=$$?; \
	    scripts/test-servers.sh stop $$dir >/dev/null 2>&1; exit $$rc
