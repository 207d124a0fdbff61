# fuzz/fuzz.mk: libFuzzer targets of the parsers (clang,
# -fsanitize=fuzzer,address,undefined), one fuzz/fuzz_<target>.c each, their
# seed corpora in fuzz/corpus/<target>/. "include fuzz/fuzz.mk" from the
# top-level Makefile (after BUILD).
#
#   make fuzz                  every target FUZZ_TIME seconds (60)
#   make fuzz FUZZ_TIME=600 FUZZ_TARGETS="stomp jwt"
#   make fuzz-build            only build them (build/fuzz/fuzz_<target>)
#
# What a target finds stays in build/fuzz/corpus/<target> for the next run;
# a crash is saved in build/fuzz/crashes/. make test runs every target a
# few seconds from its seeds (t/098-fuzz.t).

# the sources under test, one variable each: a file that moves is one line
FUZZ_WS_PARSER_SRC  = ngx_chat_module/proto/ngx_chat_ws_parser.c
FUZZ_UTF8_SRC       = ngx_chat_module/proto/ngx_chat_utf8.c
FUZZ_STOMP_SRC      = ngx_chat_module/proto/ngx_chat_stomp.c
FUZZ_JWT_SRC        = ngx_chat_module/proto/ngx_chat_jwt.c
FUZZ_API_BODY_SRC   = ngx_chat_module/proto/ngx_chat_api_body.c
FUZZ_SOCKJS_SRC     = ngx_chat_module/proto/ngx_chat_sockjs_codec.c
FUZZ_RECORD_SRC     = workers/persist/chat_persist_record.c
FUZZ_FCM_CLIENT_SRC = workers/push/fcm_client.c
FUZZ_FCM_AUTH_SRC   = workers/push/fcm_auth.c
FUZZ_WK_LOG_SRC     = workers/common/wk_log.c
FUZZ_WK_PROC_SRC    = workers/common/wk_proc.c
FUZZ_WK_CONF_SRC    = workers/common/wk_conf.c
# the workers' sources include "common/wk_*.h" from here
FUZZ_WORKERS_INC    = workers

FUZZ_CC       ?= clang
FUZZ_DIR       = $(BUILD)/fuzz
FUZZ_TIME     ?= 60
FUZZ_TARGETS  ?= ws_parser stomp jwt utf8 api_body persist_record \
                 fcm_response sockjs_codec
FUZZ_CFLAGS    = -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Werror \
                 -fsanitize=fuzzer,address,undefined \
                 -fno-sanitize-recover=undefined -Ifuzz
FUZZ_ALL       = ws_parser stomp jwt utf8 api_body persist_record \
                 fcm_response sockjs_codec
FUZZ_BINS      = $(FUZZ_ALL:%=$(FUZZ_DIR)/fuzz_%)

# -I of a source's directory, its header, a library's flags
fuzz_inc       = $(sort $(foreach s,$(1),-I$(patsubst %/,%,$(dir $(s)))))
fuzz_h         = $(wildcard $(patsubst %.c,%.h,$(1)))
fuzz_pkg       = $$(pkg-config --cflags --libs $(1))

.PHONY: fuzz fuzz-build

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@sh fuzz/run.sh $(FUZZ_TIME) $(FUZZ_DIR) $(FUZZ_DIR)/corpus \
	    $(FUZZ_TARGETS)

FUZZ_WS_DEPS = $(FUZZ_WS_PARSER_SRC) $(FUZZ_UTF8_SRC)
$(FUZZ_DIR)/fuzz_ws_parser: fuzz/fuzz_ws_parser.c fuzz/fuzz.h \
        $(FUZZ_WS_DEPS) $(call fuzz_h,$(FUZZ_WS_DEPS))
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(call fuzz_inc,$(FUZZ_WS_DEPS)) -o $@ \
	    fuzz/fuzz_ws_parser.c $(FUZZ_WS_DEPS)

$(FUZZ_DIR)/fuzz_utf8: fuzz/fuzz_utf8.c fuzz/fuzz.h $(FUZZ_UTF8_SRC) \
        $(call fuzz_h,$(FUZZ_UTF8_SRC))
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(call fuzz_inc,$(FUZZ_UTF8_SRC)) -o $@ \
	    fuzz/fuzz_utf8.c $(FUZZ_UTF8_SRC)

$(FUZZ_DIR)/fuzz_stomp: fuzz/fuzz_stomp.c fuzz/fuzz.h $(FUZZ_STOMP_SRC) \
        $(call fuzz_h,$(FUZZ_STOMP_SRC))
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(call fuzz_inc,$(FUZZ_STOMP_SRC)) -o $@ \
	    fuzz/fuzz_stomp.c $(FUZZ_STOMP_SRC)

FUZZ_JWT_DEPS = $(FUZZ_JWT_SRC) $(FUZZ_UTF8_SRC)
$(FUZZ_DIR)/fuzz_jwt: fuzz/fuzz_jwt.c fuzz/fuzz.h $(FUZZ_JWT_DEPS) \
        $(call fuzz_h,$(FUZZ_JWT_DEPS))
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(call fuzz_inc,$(FUZZ_JWT_DEPS)) -o $@ \
	    fuzz/fuzz_jwt.c $(FUZZ_JWT_DEPS) $(call fuzz_pkg,libcrypto jansson)

FUZZ_API_DEPS = $(FUZZ_API_BODY_SRC) $(FUZZ_JWT_SRC) $(FUZZ_UTF8_SRC)
$(FUZZ_DIR)/fuzz_api_body: fuzz/fuzz_api_body.c fuzz/fuzz.h \
        $(FUZZ_API_DEPS) $(call fuzz_h,$(FUZZ_API_DEPS))
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(call fuzz_inc,$(FUZZ_API_DEPS)) -o $@ \
	    fuzz/fuzz_api_body.c $(FUZZ_API_DEPS) \
	    $(call fuzz_pkg,libcrypto jansson)

$(FUZZ_DIR)/fuzz_persist_record: fuzz/fuzz_persist_record.c fuzz/fuzz.h \
        $(FUZZ_RECORD_SRC) $(dir $(FUZZ_RECORD_SRC))chat_persist.h
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(call fuzz_inc,$(FUZZ_RECORD_SRC)) \
	    -I$(FUZZ_WORKERS_INC) -o $@ fuzz/fuzz_persist_record.c \
	    $(FUZZ_RECORD_SRC) $(call fuzz_pkg,jansson rdkafka)

# fcm_client.c is included by the target (its static functions)
FUZZ_FCM_DEPS = $(FUZZ_FCM_AUTH_SRC) $(FUZZ_WK_LOG_SRC) $(FUZZ_WK_PROC_SRC) \
                $(FUZZ_WK_CONF_SRC)
$(FUZZ_DIR)/fuzz_fcm_response: fuzz/fuzz_fcm_response.c fuzz/fuzz.h \
        $(FUZZ_FCM_CLIENT_SRC) $(FUZZ_FCM_DEPS) \
        $(call fuzz_h,$(FUZZ_FCM_CLIENT_SRC) $(FUZZ_FCM_DEPS))
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -I$(FUZZ_WORKERS_INC) \
	    $(call fuzz_inc,$(FUZZ_FCM_CLIENT_SRC) $(FUZZ_FCM_DEPS)) \
	    -DFUZZ_FCM_CLIENT_C='"$(abspath $(FUZZ_FCM_CLIENT_SRC))"' -o $@ \
	    fuzz/fuzz_fcm_response.c $(FUZZ_FCM_DEPS) \
	    $(call fuzz_pkg,jansson libcurl libcrypto)

FUZZ_SOCKJS_DEPS = $(FUZZ_SOCKJS_SRC) $(FUZZ_UTF8_SRC)
$(FUZZ_DIR)/fuzz_sockjs_codec: fuzz/fuzz_sockjs_codec.c fuzz/fuzz.h \
        $(FUZZ_SOCKJS_DEPS) $(call fuzz_h,$(FUZZ_SOCKJS_DEPS))
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(call fuzz_inc,$(FUZZ_SOCKJS_DEPS)) -o $@ \
	    fuzz/fuzz_sockjs_codec.c $(FUZZ_SOCKJS_DEPS) \
	    $(call fuzz_pkg,jansson)
