# nginx -t on broken configurations: each is refused with a message that
# names the directive, says what is allowed, and points at the directive's
# own line (the one marked "# <-"), also for checks made once the block is
# read. The last blocks are accepted.

use lib 't/lib';
use Test::Chat;

# per block: the exit status, then the message or "successful"
plan(tests => 2 * blocks());

for my $block (blocks()) {
    my $name = $block->name;
    my ($rc, $out, $file, $conf) = nginx_t($block);

    if (defined $block->valid) {
        is($rc, 0, "$name - nginx -t accepts it") or diag($out);
        like($out, qr/test is successful/, "$name - and says so");
        next;
    }

    my @lines = split /\n/, $conf;
    my @marked = grep { $lines[$_] =~ /# <-\s*$/ } 0 .. $#lines;

    die "$name: mark exactly one line with '# <-'\n" unless @marked == 1;

    # the last line of the message names the place; lines before it are
    # said first, without one
    my @want = map { "[emerg] $_" } grep { /\S/ } split /\n/, $block->error;
    $want[-1] .= " in $file:" . ($marked[0] + 1);

    isnt($rc, 0, "$name - nginx -t refuses it");
    ok(!grep({ index($out, $_) < 0 } @want), "$name - $want[-1]")
        or diag("nginx -t said:\n$out");
}

__DATA__

=== TEST 1: chat_postgres_pool 0
--- http_config
    chat_postgres_pool 0;  # <-
--- error
"chat_postgres_pool" must be between 1 and 64, not "0"



=== TEST 2: chat_postgres_pool 65
--- http_config
    chat_postgres_pool 65;  # <-
    chat_presence_ttl 20s;
--- error
"chat_postgres_pool" must be between 1 and 64, not "65"



=== TEST 3: chat_presence_ttl under 3s
--- http_config
    chat_presence_ttl 1s;  # <-
--- error
"chat_presence_ttl" must be at least 3s, not "1s"



=== TEST 4: chat_node_id past the 7 bits of the id
--- http_config
    chat_node_id 128;  # <-
--- error
"chat_node_id" must be between 0 and 127, not "128"



=== TEST 5: chat_node_id 1023, which the README once allowed
--- http_config
    chat_node_id 1023;  # <-
--- error
"chat_node_id" must be between 0 and 127, not "1023"



=== TEST 6: chat_max_frame_size 0 would cut every session
--- config
    location = /ws/chat {
        chat_websocket;
        chat_jwt_secret secret;
        chat_max_frame_size 0;  # <-
    }
--- error
"chat_max_frame_size" must be at least 1k, not "0"



=== TEST 7: chat_max_frame_size under the minimum
--- http_config
    chat_max_frame_size 1023;  # <-
--- error
"chat_max_frame_size" must be at least 1k, not "1023"



=== TEST 8: chat_max_headers 100 at http level, merged into a location
--- http_config
    chat_max_headers 100;  # <-
    chat_jwt_secret secret;
--- config
    location = /ws/chat {
        chat_websocket;
    }
--- error
"chat_max_headers" must be between 4 and 64, not "100"



=== TEST 9: chat_max_headers 0
--- config
    location = /ws/chat {
        chat_websocket;
        chat_jwt_secret secret;
        chat_max_headers 0;  # <-
    }
--- error
"chat_max_headers" must be between 4 and 64, not "0"



=== TEST 9a: chat_max_subscription_id 300
--- config
    location = /ws/chat {
        chat_websocket;
        chat_jwt_secret secret;
        chat_max_subscription_id 300;  # <-
    }
--- error
"chat_max_subscription_id" must be between 1 and 256, not "300"



=== TEST 10: chat_max_message_size 0 (would mean no limit)
--- http_config
    chat_max_message_size 0;  # <-
--- error
"chat_max_message_size" must be at least 1k, not "0"



=== TEST 11: chat_max_header_length under a token's length
--- http_config
    chat_max_header_length 100;  # <-
--- error
"chat_max_header_length" must be at least 256, not "100"



=== TEST 12: chat_max_content_size 0 refuses every message
--- http_config
    chat_max_content_size 0;  # <-
--- error
"chat_max_content_size" must be at least 1, not "0"



=== TEST 13: chat_send_buffer_limit under a frame
--- http_config
    chat_send_buffer_limit 1k;  # <-
--- error
"chat_send_buffer_limit" must be at least 4k, not "1k"



=== TEST 14: chat_max_subscriptions 0
--- http_config
    chat_max_subscriptions 0;  # <-
--- error
"chat_max_subscriptions" must be between 1 and 65535, not "0"



=== TEST 15: chat_kafka_timeout 0 (librdkafka's "forever")
--- http_config
    chat_kafka 127.0.0.1:9092;
    chat_kafka_timeout 0;  # <-
--- error
"chat_kafka_timeout" must be at least 1ms, not "0"



=== TEST 16: chat_kafka_option without "="
--- http_config
    chat_kafka 127.0.0.1:9092;
    chat_kafka_option linger.ms;  # <-
    chat_kafka_timeout 3s;
--- error
"chat_kafka_option" "linger.ms" is not "name=value"



=== TEST 17: chat_kafka_option of a property librdkafka does not have
--- http_config
    chat_kafka 127.0.0.1:9092;
    chat_kafka_option no.such.property=1;  # <-
    chat_kafka_timeout 3s;
--- error
"chat_kafka_option" "no.such.property=1": No such configuration property: "no.such.property"



=== TEST 18: chat_kafka_option with a value librdkafka refuses
--- http_config
    chat_kafka 127.0.0.1:9092;
    chat_kafka_option compression.codec=zip;  # <-
--- error
"chat_kafka_option" "compression.codec=zip": Invalid value "zip" for configuration property "compression.codec"



=== TEST 19: chat_kafka_option may not set what ngx_chat sets
--- http_config
    chat_kafka 127.0.0.1:9092;
    chat_kafka_option message.timeout.ms=1000;  # <-
--- error
"chat_kafka_option" may not set "message.timeout.ms": ngx_chat sets it (chat_kafka, chat_kafka_timeout)



=== TEST 20: chat_kafka_timeout not above linger.ms, found at the end of the block
--- http_config
    chat_kafka 127.0.0.1:9092;  # <-
    chat_kafka_timeout 5ms;
--- error
"chat_kafka_timeout" (5ms) must be above linger.ms (5, our default or chat_kafka_option)
invalid Kafka configuration ("chat_kafka", "chat_kafka_timeout", "chat_kafka_option")



=== TEST 21: chat_kafka_topic that Kafka would refuse
--- http_config
    chat_kafka 127.0.0.1:9092;
    chat_kafka_topic "chat messages";  # <-
--- error
"chat_kafka_topic" "chat messages" is not a Kafka topic name (1 to 249 letters, digits, ".", "_", "-")



=== TEST 22: chat_postgres that libpq cannot parse (keywords)
--- no_chat_stores
--- http_config
    chat_postgres "host=127.0.0.1 dbname";  # <-
--- error
"chat_postgres" is not a connection string (libpq keywords or a postgresql:// URI): missing "=" after "dbname" in connection info string



=== TEST 23: chat_postgres that libpq cannot parse (URI), its password unsaid
--- no_chat_stores
--- http_config
    chat_postgres "postgresql://chat:hunter2@127.0.0.1?nosuchoption=1";  # <-
--- error
"chat_postgres" is not a connection string (libpq keywords or a postgresql:// URI): invalid URI query parameter: "nosuchoption"



=== TEST 24: chat_allowed_origins with a path
--- config
    location = /ws/chat {
        chat_websocket;
        chat_jwt_secret secret;
        chat_allowed_origins https://chat.example.com
                             https://app.example.com/;  # <-
    }
--- error
"chat_allowed_origins" "https://app.example.com/" is not an origin: it has a path (no "/" after the host or port) (scheme://host[:port], or *)



=== TEST 25: chat_allowed_origins without a scheme
--- http_config
    chat_allowed_origins chat.example.com;  # <-
--- error
"chat_allowed_origins" "chat.example.com" is not an origin: no "://" after the scheme (scheme://host[:port], or *)



=== TEST 26: chat_allowed_origins with a port out of range
--- http_config
    chat_allowed_origins https://chat.example.com:65536;  # <-
--- error
"chat_allowed_origins" "https://chat.example.com:65536" is not an origin: a bad port (scheme://host[:port], or *)



=== TEST 27: a WebSocket location without a secret or an identity: its line, not the end of the block
--- config
    location = /ws/chat {
        chat_websocket;  # <-
        chat_max_frame_size 8k;
    }
    location = /other {
        return 204;
    }
--- error
"chat_websocket" needs "chat_jwt_secret" or "chat_identity" (in the location or above it)



=== TEST 28: an API location without a secret or an identity
--- config
    location /chat/api/ {
        chat_api;  # <-
        chat_max_headers 8;
    }
--- error
"chat_api" needs "chat_jwt_secret" or "chat_identity" (in the location or above it)



=== TEST 29: chat_dev_token without a secret to sign with
--- config
    location = /dev/token {
        chat_dev_token;  # <-
        chat_identity $remote_user;
    }
--- error
"chat_dev_token" needs "chat_jwt_secret" (in the location or above it)



=== TEST 30: the limits of every range are accepted
--- http_config
    chat_postgres_pool 64;
    chat_presence_ttl 3s;
    chat_node_id 127;
    chat_max_frame_size 1k;
    chat_max_message_size 1k;
    chat_max_headers 4;
    chat_max_header_length 256;
    chat_max_content_size 1;
    chat_send_buffer_limit 4k;
    chat_max_subscriptions 65535;
--- config
    location = /ws/chat {
        chat_websocket;
        chat_jwt_secret secret;
        chat_max_headers 64;
        chat_allowed_origins https://chat.example.com
                             http://127.0.0.1:8080 https://[::1]:8443 *;
    }
--- valid



=== TEST 31: and the other ends
--- http_config
    chat_postgres_pool 1;
    chat_node_id 0;
    chat_max_subscriptions 1;
    chat_kafka 127.0.0.1:9092;
    chat_kafka_timeout 1ms;
    chat_kafka_option linger.ms=0;
    chat_kafka_option compression.codec=lz4;
    chat_kafka_topic chat.messages-v2_eu;
    chat_kafka_receipts_topic Chat.Receipts;
--- config
    location = /ws/chat {
        chat_websocket;
        chat_identity $remote_user;
        chat_allowed_origins capacitor://localhost;
    }
--- valid



=== TEST 32: chat_max_group_members 1: a group needs two
--- http_config
    chat_max_group_members 1;  # <-
--- error
"chat_max_group_members" must be between 2 and 100000, not "1"



=== TEST 33: chat_jwt_leeway over an hour
--- http_config
    chat_jwt_leeway 2h;  # <-
--- error
"chat_jwt_leeway" must be between 0 and 3600 seconds, not "2h"



=== TEST 34: chat_conversation_rate per hour
--- http_config
    chat_conversation_rate 10r/h;  # <-
--- error
"chat_conversation_rate" directive wants a rate such as "20r/s" or "600r/m"



=== TEST 35: the new limits at the ends of their ranges, and off
--- http_config
    chat_max_group_members 100000;
    chat_conversation_rate off;
    chat_idle_timeout 0;
    chat_jwt_leeway 3600;
--- config
    location /chat/api/ {
        chat_api;
        chat_jwt_secret secret;
        chat_max_group_members 2;
        chat_conversation_rate 1r/m burst=0;
        chat_jwt_leeway 0;
        chat_jwt_audience chat;
        chat_jwt_issuer https://id.example.com/;
    }
--- valid
