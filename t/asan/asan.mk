# t/asan/asan.mk: make test-asan: nginx itself (Debian's version, from the
# upstream tarball of its source package) and the module built with
# AddressSanitizer and UndefinedBehaviorSanitizer, then the whole suite on
# them (t/asan/run.sh). "include t/asan/asan.mk" from the top-level Makefile,
# after NGINX_SRC, BUILD and MODULE_SRCS.

ASAN_DIR      = $(BUILD)/asan
ASAN_VERSION := $(shell sed -n 's/^\#define NGINX_VERSION *"\(.*\)"/\1/p' \
                    $(NGINX_SRC)/src/core/nginx.h 2>/dev/null)
ASAN_TARBALL  = $(ASAN_DIR)/nginx_$(ASAN_VERSION).orig.tar.gz
ASAN_NGINX    = $(ASAN_DIR)/nginx-$(ASAN_VERSION)
ASAN_BIN      = $(ASAN_NGINX)/objs/nginx
ASAN_MODULE   = $(ASAN_NGINX)/objs/ngx_chat_module.so

# -O1 keeps the stacks readable; -z nodelete keeps the module mapped after
# the cycle pool's cleanup dlclose()s it at exit, so that the leak check
# still sees the module's globals and can name its functions
ASAN_CFLAGS   = -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined
ASAN_LDFLAGS  = -fsanitize=address,undefined -Wl,-z,nodelete

.PHONY: asan-deps asan-build test-asan

asan-deps: check-deps
	@test -n "$(ASAN_VERSION)" || { \
	    echo "error: no NGINX_VERSION in $(NGINX_SRC)/src/core/nginx.h"; \
	    exit 1; }
	@sh t/asan/nginx-source.sh $(ASAN_VERSION) $(ASAN_DIR)

$(ASAN_TARBALL):
	@$(MAKE) --no-print-directory asan-deps

$(ASAN_NGINX)/objs/Makefile: $(ASAN_TARBALL) config t/asan/asan.mk
	rm -rf $(ASAN_NGINX)
	tar -xzf $(ASAN_TARBALL) -C $(ASAN_DIR)
	cd $(ASAN_NGINX) && bash -c '. $(NGINX_SRC)/conf_flags && ./configure \
	    "$${NGX_CONF_FLAGS[@]}" --with-compat \
	    --with-stream=dynamic --with-stream_ssl_module \
	    --with-cc-opt="$(ASAN_CFLAGS) -fPIC -Wextra \
	        -Wno-unused-parameter -Wno-sign-compare \
	        -Wno-missing-field-initializers" \
	    --with-ld-opt="$(ASAN_LDFLAGS)" \
	    --add-dynamic-module=$(CURDIR)' > configure.log 2>&1 \
	    || { tail -20 $(ASAN_NGINX)/configure.log; exit 1; }

# the binary and the modules (objs/Makefile's default target builds them:
# ours, and the stream module that chat_stomp's t/110 loads)
$(ASAN_BIN): $(ASAN_NGINX)/objs/Makefile $(MODULE_SRCS)
	$(MAKE) -s -C $(ASAN_NGINX) -f objs/Makefile

asan-build: $(ASAN_BIN)

# T=t/020-api.t runs just that file; about twice as long as make test
test-asan: deps browser-deps
	@$(MAKE) --no-print-directory all bench-tool asan-build \
	    $(if $(shell command -v $(FUZZ_CC)),fuzz-build)
	@CHAT_TOKEN_BIN=$(abspath $(BIN))/chat-token CHAT_BIN=$(abspath $(BIN)) \
	    t/asan/run.sh $(abspath $(ASAN_BIN)) $(abspath $(ASAN_MODULE)) \
	        $(abspath $(ASAN_DIR))/logs $(T)
