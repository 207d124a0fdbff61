# chat_dev_token: development sign-in, loopback only, never through a proxy.

use lib 't/lib';
use Test::Chat;

plan_from_blocks();
run_tests();

__DATA__

=== TEST 1: a token for any valid user name, accepted by the API
--- config
    location = /dev/token {
        chat_dev_token;
        chat_jwt_secret $TEST_NGINX_JWT_SECRET;
    }
    location /chat/api/ {
        chat_api;
        chat_jwt_secret $TEST_NGINX_JWT_SECRET;
    }
--- tests: 3
--- perl
my ($st, $h, $body) = http_request(GET => '/dev/token?user=dev.alice');
is($st, 200, 'answered');
my $t = json_decode($body)->{token};
like($t, qr/^[\w-]+\.[\w-]+\.[\w-]+$/, 'a JWT');
my ($st2, $me) = api(GET => '/users/me', undef,
                     undef, token => $t);
is($me && $me->{userId}, 'dev.alice', 'the API knows its bearer');
--- error_log
"chat_dev_token" hands out a token for any user
--- no_error_log
[error]



=== TEST 2: a proxied request is refused
--- config
    location = /dev/token {
        chat_dev_token;
        chat_jwt_secret $TEST_NGINX_JWT_SECRET;
    }
--- request
GET /dev/token?user=alice
--- more_headers
X-Forwarded-For: 192.0.2.1
--- error_code: 403
--- response_body_like: loopback clients only
--- no_error_log
[error]



=== TEST 3: an invalid user name is a bad request
--- config
    location = /dev/token {
        chat_dev_token;
        chat_jwt_secret $TEST_NGINX_JWT_SECRET;
    }
--- request
GET /dev/token?user=no%20spaces
--- error_code: 400
--- response_body_like: bad_request
--- no_error_log
[error]



=== TEST 4: it needs a secret to sign with
--- config
    location = /dev/token {
        chat_dev_token;
    }
--- must_die
--- error_log
"chat_dev_token" needs "chat_jwt_secret"
