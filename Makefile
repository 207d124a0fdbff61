# Makefile: builds ngx_chat_module.so against Debian's nginx, the workers and
# tools, runs the suite, and runs the whole system on loopback.

NGINX_SRC    ?= /usr/share/nginx/src
BUILD        ?= build
NGINX_BUILD   = $(BUILD)/nginx
MODULE        = $(NGINX_BUILD)/objs/ngx_chat_module.so
STREAM_MODULE = $(NGINX_BUILD)/objs/ngx_chat_stream_module.so
BIN           = $(BUILD)/bin

CC           ?= cc
WARN          = -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS       ?= -O2 -g

DEB_PACKAGES  = nginx nginx-dev libhiredis-dev libpq-dev librdkafka-dev \
                libjansson-dev libssl-dev libcurl4-openssl-dev pkg-config \
                libpcre2-dev zlib1g-dev redis-server postgresql \
                libtest-base-perl libprotocol-websocket-perl \
                libio-socket-ssl-perl perl make gcc \
                redis-tools curl procps clang libclang-rt-dev \
                libnginx-mod-stream python3-stomp openssl \
                debhelper dpkg-dev lintian help2man mosquitto

MODULE_SRCS   = $(wildcard ngx_chat_module/*.c ngx_chat_module/*/*.[ch] \
                  ngx_chat_module/store/lua/*) config config.make

# the scripts find what this Makefile built (also with BUILD=elsewhere)
CHATCTL       = CHAT_MODULE=$(abspath $(MODULE)) \
                CHAT_TOKEN_BIN=$(abspath $(BIN))/chat-token \
                CHAT_BIN=$(abspath $(BIN)) scripts/chatctl

.PHONY: all module workers deps check-deps test unit clean distclean run \
        start stop restart status token migrate psql logs browser-deps \
        torture bench bench-tool bench-deps test-deps

all: module workers

# everything to build, run and test, the browser test's packages included
# (make run and make start run it; make test only checks it was run)
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	        | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	    $$sudo apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq \
	        $$missing; \
	fi
	@$(MAKE) --no-print-directory browser-deps
	@$(MAKE) --no-print-directory bench-sio-deps

# the browser test (t/090-browser.t): Debian's chromium, node and npm
# (Debian's, unless a node with npm is there: NodeSource's nodejs has npm
# and conflicts with Debian's npm), then playwright-core from npm. It
# drives /usr/bin/chromium: no browser is ever downloaded.
BROWSER_STAMP = t/browser/node_modules/.package-lock.json

browser-deps:
	@missing=""; \
	dpkg-query -W -f='$${Status}\n' chromium 2>/dev/null \
	    | grep -q "install ok installed" || missing=" chromium"; \
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	    missing="$$missing nodejs npm"; \
	fi; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	    $$sudo apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq \
	        $$missing; \
	fi
	@$(MAKE) --no-print-directory -s $(BROWSER_STAMP)

$(BROWSER_STAMP): t/browser/package.json t/browser/package-lock.json
	cd t/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
	    npm ci --no-audit --no-fund --loglevel=error
	@touch $@

check-deps:
	@test -f $(NGINX_SRC)/configure -a -f $(NGINX_SRC)/conf_flags || { \
	    echo "error: nginx source not found in $(NGINX_SRC):" \
	         "apt-get install nginx-dev (or make deps)"; exit 1; }

$(NGINX_BUILD)/objs/Makefile: config config.make | check-deps
	rm -rf $(NGINX_BUILD)
	mkdir -p $(BUILD)
	cp -r $(NGINX_SRC) $(NGINX_BUILD)
	cd $(NGINX_BUILD) && bash -c '. ./conf_flags && ./configure \
	    "$${NGX_CONF_FLAGS[@]}" --with-compat \
	    --with-stream=dynamic --with-stream_ssl_module \
	    --with-cc-opt="-g -O2 -fPIC -Wextra -Wno-unused-parameter \
	        -Wno-sign-compare -Wno-missing-field-initializers" \
	    --add-dynamic-module=$(CURDIR)' > configure.log 2>&1 \
	    || { tail -20 $(NGINX_BUILD)/configure.log; exit 1; }

# ngx_chat_module.so, and ngx_chat_stream_module.so (chat_stomp) for
# Debian's ngx_stream_module.so (libnginx-mod-stream): the nginx-dev source
# has no stream .c files, so only our two modules are built
$(MODULE): $(NGINX_BUILD)/objs/Makefile $(MODULE_SRCS)
	$(MAKE) -s -C $(NGINX_BUILD) -f objs/Makefile \
	    objs/ngx_chat_module.so objs/ngx_chat_stream_module.so

module: $(MODULE)

include workers/Makefile.inc
include bench/bench.mk
include t/asan/asan.mk
include fuzz/fuzz.mk

workers: workers-daemons

clean:
	rm -rf $(BUILD)

# the unit tests' rules (the C parsers; the checks of chat-token), when present
ifneq ($(wildcard t/unit/Makefile.inc),)
include t/unit/Makefile.inc
else
unit:
	sh t/unit/run.sh
endif


# make test installs nothing: what make deps installs must be there
test-deps:
	@missing=""; for p in $(DEB_PACKAGES) chromium; do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	        | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	command -v node >/dev/null && command -v npm >/dev/null \
	    || missing="$$missing nodejs npm"; \
	for f in t/browser/package.json t/browser/package-lock.json; do \
	    [ -f $(BROWSER_STAMP) ] && [ ! $(BROWSER_STAMP) -ot $$f ] \
	        || { missing="$$missing playwright-core(npm)"; break; }; \
	done; \
	[ -d bench/socketio/node_modules/socket.io ] \
	    || missing="$$missing socket.io(npm, bench/socketio)"; \
	if [ -n "$$missing" ]; then \
	    echo "error: missing:$$missing" >&2; \
	    echo "error: run make deps first (it installs them)" >&2; \
	    exit 1; \
	fi

# the whole suite: unit tests, then prove -r t/ against one Redis and one
# PostgreSQL started for the run. T=t/020-api.t runs just that file,
# PROVE_FLAGS=-v shows every check.
test: test-deps
	@$(MAKE) --no-print-directory all bench-tool \
	    $(if $(shell command -v $(FUZZ_CC)),fuzz-build)
	@TEST_NGINX_MODULE=$${TEST_NGINX_MODULE:-$(abspath $(MODULE))} \
	    CHAT_TOKEN_BIN=$(abspath $(BIN))/chat-token CHAT_BIN=$(abspath $(BIN)) \
	    CHAT_FUZZ_BIN=$(abspath $(FUZZ_DIR)) \
	    scripts/run-tests.sh $(T)

# the ordering torture test (t/046-ordering-torture.t), long: 20 runs with
# random seeds (each printed; TORTURE_SEED=N replays one)
TORTURE_RUNS   ?= 20
TORTURE_ROUNDS ?= 12

torture: all
	@TORTURE_RUNS=$(TORTURE_RUNS) TORTURE_ROUNDS=$(TORTURE_ROUNDS) \
	    TEST_NGINX_MODULE=$${TEST_NGINX_MODULE:-$(abspath $(MODULE))} \
	    CHAT_TOKEN_BIN=$(abspath $(BIN))/chat-token CHAT_BIN=$(abspath $(BIN)) \
	    PROVE_FLAGS="-v $(PROVE_FLAGS)" SKIP_UNIT=1 \
	    scripts/run-tests.sh t/046-ordering-torture.t

# the chaos suite (t/chaos/chaos.t), long: every single fault against three
# gateway nodes, a PostgreSQL primary and standby and three Kafka brokers,
# then CHAOS_ROUNDS random pairs of faults (seed printed; CHAOS_SEED=N
# replays one). make test runs its short version (two faults).
CHAOS_ROUNDS ?= 4

.PHONY: chaos
chaos: all
	@CHAOS=full CHAOS_ROUNDS=$(CHAOS_ROUNDS) \
	    $(if $(CHAOS_SEED),CHAOS_SEED=$(CHAOS_SEED)) \
	    TEST_NGINX_MODULE=$${TEST_NGINX_MODULE:-$(abspath $(MODULE))} \
	    CHAT_TOKEN_BIN=$(abspath $(BIN))/chat-token CHAT_BIN=$(abspath $(BIN)) \
	    PROVE_FLAGS="-v $(PROVE_FLAGS)" SKIP_UNIT=1 \
	    scripts/run-tests.sh t/chaos/chaos.t

# development: everything on 127.0.0.1, state in var/ (see README.md)
run: deps
	@$(MAKE) --no-print-directory all
	@$(CHATCTL) run

start: deps
	@$(MAKE) --no-print-directory all
	@$(CHATCTL) start

stop:
	@$(CHATCTL) stop

restart: all
	@$(CHATCTL) restart

status:
	@$(CHATCTL) status || true

# make token USER=alice [NAME="Alice A."] [TTL=3600]: a development JWT
# (USER must be given on the command line, not taken from the environment)
token: workers
	@$(CHATCTL) token $(if $(TTL),--ttl '$(TTL)') \
	    $(if $(NAME),--name '$(NAME)') \
	    $(if $(filter command line,$(origin USER)),'$(USER)',)

migrate:
	@$(CHATCTL) migrate

psql:
	@$(CHATCTL) psql

logs:
	@$(CHATCTL) logs

distclean: clean
	@if [ -d var ] || [ -d t/servroot ]; then \
	    $(CHATCTL) stop >/dev/null 2>&1 || true; \
	    rm -rf var t/servroot; \
	fi
	rm -rf t/browser/node_modules

# the Debian packages (debian/): libnginx-mod-chat and ngx-chat-workers in
# build/deb/, rebuilt only when a source file changed (README.md, "Install
# on Debian")
.PHONY: deb

deb:
	@scripts/deb.sh $(BUILD)/deb
