# workers/push/push.mk: build rule of the push worker (chat-push);
# included by workers/Makefile.inc.

PUSH_SRCS    = workers/push/chat_push.c workers/push/push_presence.c \
               workers/push/fcm_client.c workers/push/fcm_auth.c
PUSH_DEPS    = $(PUSH_SRCS) workers/push/fcm_client.h workers/push/fcm_auth.h \
               workers/push/push_presence.h \
               $(WK_COMMON) $(WK_COMMON_H)

.PHONY: workers-push

workers-push: $(WK_BIN)/chat-push

$(WK_BIN)/chat-push: $(PUSH_DEPS)
	@mkdir -p $(WK_BIN)
	$(CC) $(WK_CFLAGS) -o $@ $(PUSH_SRCS) $(WK_COMMON) \
	    $$(pkg-config --cflags --libs rdkafka libpq jansson hiredis \
	                                  libcurl libcrypto)
