# workers/tools/tools.mk: build rules of the tools: the in-memory Kafka
# broker, the Kafka produce and consume test tools, and chat-token (the
# only rule that builds it: make, the unit tests and chatctl use this one);
# included by workers/Makefile.inc.

TOOLS        = $(WK_BIN)/chat-kafka-broker $(WK_BIN)/chat-kafka-produce \
               $(WK_BIN)/chat-kafka-consume $(WK_BIN)/chat-token

.PHONY: workers-tools

workers-tools: $(TOOLS)

$(WK_BIN)/chat-kafka-broker: workers/tools/chat_kafka_broker.c $(WK_COMMON) \
                             $(WK_COMMON_H)
	@mkdir -p $(WK_BIN)
	$(CC) $(WK_CFLAGS) -o $@ workers/tools/chat_kafka_broker.c \
	    $(WK_COMMON) $$(pkg-config --cflags --libs rdkafka)

$(WK_BIN)/chat-kafka-produce: workers/tools/chat_kafka_produce.c \
                              $(WK_COMMON) $(WK_COMMON_H)
	@mkdir -p $(WK_BIN)
	$(CC) $(WK_CFLAGS) -o $@ workers/tools/chat_kafka_produce.c \
	    $(WK_COMMON) $$(pkg-config --cflags --libs rdkafka jansson)

$(WK_BIN)/chat-kafka-consume: workers/tools/chat_kafka_consume.c \
                              $(WK_COMMON) $(WK_COMMON_H)
	@mkdir -p $(WK_BIN)
	$(CC) $(WK_CFLAGS) -o $@ workers/tools/chat_kafka_consume.c \
	    $(WK_COMMON) $$(pkg-config --cflags --libs rdkafka)

$(WK_BIN)/chat-token: workers/tools/chat_token.c \
                      $(CHAT_JWT_DIR)/ngx_chat_jwt.c \
                      $(CHAT_JWT_DIR)/ngx_chat_jwt.h
	@mkdir -p $(WK_BIN)
	$(CC) -O2 -g -Wall -Wextra -Werror -I$(CHAT_JWT_DIR) -o $@ \
	    workers/tools/chat_token.c $(CHAT_JWT_DIR)/ngx_chat_jwt.c \
	    $$(pkg-config --cflags --libs openssl jansson)
