# bench/bench.mk: build rules of the load generator and the bench target;
# included by the top-level Makefile (which defines BIN, CC, WARN, or not).

BENCH_BIN_DIR ?= $(or $(BIN),build/bin)
BENCH_TOOL     = $(BENCH_BIN_DIR)/chat_bench
BENCH_SRCS     = bench/chat_bench.c bench/cb_stomp.c bench/cb_proc.c \
                 bench/cb_procs.c bench/cb_report.c bench/cb_options.c \
                 bench/cb_hist.c bench/cb_setup.c
BENCH_HDRS     = bench/cb_bench.h bench/cb_hist.h bench/cb_setup.h
BENCH_WARN    ?= -Wall -Wextra -Werror -Wno-unused-parameter
BENCH_MODULE   = build/nginx/objs/ngx_chat_module.so

# what make bench installs when missing: the systems it compares against
BENCH_DEB_PACKAGES = rabbitmq-server libnginx-mod-nchan

.PHONY: bench bench-tool bench-deps

bench-tool: $(BENCH_TOOL)

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

# make bench [BENCH=long]: see docs/BENCHMARKS.md
bench: deps bench-deps
	@$(MAKE) --no-print-directory all bench-tool
	@BENCH=$(or $(BENCH),short) \
	    CHAT_MODULE=$(abspath $(or $(MODULE),$(BENCH_MODULE))) \
	    CHAT_BENCH_BIN=$(abspath $(BENCH_TOOL)) \
	    CHAT_BIN=$(abspath $(BENCH_BIN_DIR)) \
	    bench/run.sh
