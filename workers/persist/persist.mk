# workers/persist/persist.mk: build rule of the persistence worker
# (chat-persist); included by workers/Makefile.inc.

PERSIST_SRCS = workers/persist/chat_persist.c \
               workers/persist/chat_persist_record.c \
               workers/persist/chat_persist_pg.c

.PHONY: workers-persist

workers-persist: $(WK_BIN)/chat-persist

$(WK_BIN)/chat-persist: $(PERSIST_SRCS) workers/persist/chat_persist.h \
                        $(WK_COMMON) $(WK_COMMON_H)
	@mkdir -p $(WK_BIN)
	$(CC) $(WK_CFLAGS) -o $@ $(PERSIST_SRCS) $(WK_COMMON) \
	    $$(pkg-config --cflags --libs rdkafka libpq jansson)
