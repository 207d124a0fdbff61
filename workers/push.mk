# workers/push.mk: build rule of the push worker (chat-push); included by
# the top-level Makefile after workers/Makefile.inc.

PUSH_SRCS    = workers/chat_push.c workers/push_presence.c \
               workers/fcm_client.c workers/fcm_auth.c
PUSH_DEPS    = $(PUSH_SRCS) workers/fcm_client.h workers/fcm_auth.h \
               workers/push_presence.h \
               $(WK_COMMON) $(WK_COMMON_H)

.PHONY: workers-push

workers-push: $(WK_BIN)/chat-push

$(WK_BIN)/chat-push: $(PUSH_DEPS)
	@mkdir -p $(WK_BIN)
	$(CC) $(WK_CFLAGS) -o $@ $(PUSH_SRCS) $(WK_COMMON) \
	    $$(pkg-config --cflags --libs rdkafka libpq jansson hiredis \
	                                  libcurl libcrypto)
