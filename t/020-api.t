# 020-api.t: the conversation REST API (PROTOCOL.md section 7): create,
# list, get, add and remove members, users, identity and every error.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

# a port nobody listens on, for the "PostgreSQL is down" block
$ENV{TEST_NGINX_DEAD_PORT} ||= free_port();

# the usual location blocks (the API's, and STOMP's for the blocks that
# check what sessions get)
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config();

plan_from_blocks();
run_tests();

__DATA__

=== TEST 1: a direct conversation is created: 201, both members
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 6
--- perl
my ($st, $j, $h) = api(POST => '/conversations', 'alice',
                       { type => 'direct', members => ['bob'] });
is($st, 201, '201 Created');
like($h->{'content-type'}, qr{^application/json}, 'JSON');
like($j->{conversationId}, qr/^c_[0-9a-f]{32}$/, 'an id made by the server');
is($j->{type}, 'direct', 'type');
is_deeply($j->{members}, ['alice', 'bob'], 'the caller and the other');
is_deeply([@$j{qw(lastSeq lastReadSeq unread)}, $j->{lastMessage}],
          [0, 0, 0, undef], 'no messages yet');
--- no_error_log
[error]



=== TEST 2: the same pair asked again (from the other side): 200, same id
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 3
--- perl
my ($st, $a) = api(POST => '/conversations', 'carol',
                   { type => 'direct', members => ['dave'] });
is($st, 201, 'first time 201');
my ($st2, $b) = api(POST => '/conversations', 'dave',
                    { type => 'direct', members => ['carol', 'dave'] });
is($st2, 200, 'again 200');
is($b->{conversationId}, $a->{conversationId}, 'the existing conversation');
--- no_error_log
[error]



=== TEST 3: a direct conversation needs exactly one other member
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 3
--- perl
my ($st, $j) = api(POST => '/conversations', 'alice',
                   { type => 'direct', members => ['alice'] });
is($st, 400, 'only oneself: 400');
is($j->{error}{code}, 'bad_request', 'bad_request');
($st) = api(POST => '/conversations', 'alice',
            { type => 'direct', members => ['bob', 'carol'] });
is($st, 400, 'two others: 400');
--- no_error_log
[error]



=== TEST 4: a group: name, the caller added, duplicates dropped, creator
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 4
--- perl
my ($st, $j) = api(POST => '/conversations', 'gina',
                   { type => 'group', name => "Caf\x{e9} \x{2615}",
                     members => ['hal', 'ivy', 'hal', 'gina'] });
is($st, 201, 'created: 201');
is($j->{name}, "Caf\x{e9} \x{2615}", 'the name, UTF-8 intact');
is_deeply([sort @{ $j->{members} }], ['gina', 'hal', 'ivy'], 'members');
is($j->{createdBy}, 'gina', 'createdBy');
--- no_error_log
[error]



=== TEST 5: the list: the caller's conversations, most recently active first
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 4
--- perl
my (undef, $x) = api(POST => '/conversations', 'lena',
                     { type => 'group', name => 'x', members => ['max'] });
my (undef, $y) = api(POST => '/conversations', 'lena',
                     { type => 'direct', members => ['ned'] });
my ($st, $j) = api(GET => '/conversations', 'lena');
is($st, 200, 'status 200');
is_deeply([map { $_->{conversationId} } @{ $j->{conversations} }],
          [$y->{conversationId}, $x->{conversationId}], 'newest first');
pg_do("UPDATE conversations SET last_seq = 3, last_message_at = now()"
      . " WHERE id = '$x->{conversationId}'");
(undef, $j) = api(GET => '/conversations', 'lena');
is($j->{conversations}[0]{conversationId}, $x->{conversationId},
   'a message moves it to the top');
is($j->{conversations}[0]{unread}, 3, 'unread = lastSeq - lastReadSeq');
--- no_error_log
[error]



=== TEST 6: get: members see it, others get 403
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 4
--- perl
my (undef, $c) = api(POST => '/conversations', 'olga',
                     { type => 'group', members => ['pete'] });
my $id = $c->{conversationId};
my ($st, $j) = api(GET => "/conversations/$id", 'pete');
is($st, 200, 'a member: 200');
is($j->{conversationId}, $id, 'the conversation');
($st, $j) = api(GET => "/conversations/$id", 'quinn');
is($st, 403, 'not a member: 403');
is($j->{error}{code}, 'forbidden', 'error code');
--- no_error_log
[error]



=== TEST 7: an unknown conversation is 404
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- request
GET /chat/api/conversations/c_0123456789abcdef0123456789abcdef
--- more_headers
Authorization: Bearer ${token:alice}
--- error_code: 404
--- response_body_like: "code"\s*:\s*"not_found"
--- no_error_log
[error]



=== TEST 8: any member adds a member to a group: 200 with what was added and the count; the member is in
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 5
--- perl
my (undef, $c) = api(POST => '/conversations', 'rita',
                     { type => 'group', members => ['sam'] });
my $id = $c->{conversationId};
my ($st, $j) = api(POST => "/conversations/$id/members", 'sam',
                   { userId => 'tom' });
is($st, 200, 'status 200');
is_deeply([$j->{added}, $j->{memberCount}], [['tom'], 3],
          'tom is added, three members');
($st) = api(POST => "/conversations/$id/members", 'uma',
            { userId => 'uma' });
is($st, 403, 'a non-member cannot add (itself either)');
($st, $j) = api(GET => "/conversations/$id", 'tom');
is($st, 200, 'the new member reads it');
is_deeply([sort @{ $j->{members} }], ['rita', 'sam', 'tom'], 'tom is in');
--- no_error_log
[error]



=== TEST 9: the members of a direct conversation cannot change: 409
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 3
--- perl
my (undef, $c) = api(POST => '/conversations', 'vic',
                     { type => 'direct', members => ['wes'] });
my $id = $c->{conversationId};
my ($st, $j) = api(POST => "/conversations/$id/members", 'vic',
                   { userId => 'xena' });
is($st, 409, 'add: 409');
is($j->{error}{code}, 'conflict', 'conflict');
($st) = api(DELETE => "/conversations/$id/members/vic", 'vic');
is($st, 409, 'remove: 409');
--- no_error_log
[error]



=== TEST 10: a member removes itself: 204, then it is no member
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 3
--- perl
my (undef, $c) = api(POST => '/conversations', 'yara',
                     { type => 'group', members => ['zack'] });
my $id = $c->{conversationId};
my ($st, $j) = api(DELETE => "/conversations/$id/members/zack", 'zack');
is($st, 204, 'status 204');
ok(!defined $j || $j eq '', 'no body');
($st) = api(GET => "/conversations/$id", 'zack');
is($st, 403, 'gone');
--- no_error_log
[error]



=== TEST 11: the creator removes anyone, others only themselves
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 4
--- perl
my (undef, $c) = api(POST => '/conversations', 'abby',
                     { type => 'group', members => ['ben', 'cleo'] });
my $id = $c->{conversationId};
my ($st, $j) = api(DELETE => "/conversations/$id/members/cleo", 'ben');
is($st, 403, 'a member removing another: 403');
($st) = api(DELETE => "/conversations/$id/members/cleo", 'abby');
is($st, 204, 'the creator removes cleo: 204');
(undef, $j) = api(GET => "/conversations/$id", 'abby');
is_deeply([sort @{ $j->{members} }], ['abby', 'ben'], 'cleo is gone');
($st) = api(DELETE => "/conversations/$id/members/cleo", 'abby');
is($st, 404, 'not a member any more: 404');
--- no_error_log
[error]



=== TEST 12: membership changes reach /user/queue/events of those concerned
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 6
--- perl
my $s = stomp_connect('/ws/chat', user => 'evan');
$s->subscribe('/user/queue/events', 1);
my (undef, $c) = api(POST => '/conversations', 'dina',
                     { type => 'group', members => ['evan'] });
my $id = $c->{conversationId};
my $e = $s->stomp_message('/user/queue/events', 3);
is_deeply($e, { type => 'conversation.created', conversationId => $id,
                by => 'dina' }, 'conversation.created');
api(POST => "/conversations/$id/members", 'dina', { userId => 'fay' });
$e = $s->stomp_message('/user/queue/events', 3);
is($e && $e->{type}, 'member.added', 'member.added');
is($e && $e->{userId}, 'fay', 'who was added');
api(DELETE => "/conversations/$id/members/evan", 'dina');
$e = $s->stomp_message('/user/queue/events', 3);
is($e && $e->{type}, 'member.removed', 'the removed one is told');
is($e && $e->{by}, 'dina', 'by whom');
api(POST => "/conversations/$id/members", 'dina', { userId => 'gus' });
ok($s->stomp_silent(1), 'a removed member hears no more');
--- no_error_log
[error]



=== TEST 13: malformed JSON is 400 bad_request
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- request
POST /chat/api/conversations
{"type":"group","members":["a"]
--- more_headers
Authorization: Bearer ${token:alice}
--- error_code: 400
--- response_body_like: ^\{"error":\{"code":"bad_request","message":".+"\}\}$
--- no_error_log
[error]



=== TEST 14: wrong types and values are 400 with a clear message
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 8
--- perl
my @cases = (
    [ '[1,2]', qr/JSON object/ ],
    [ '{"type":"chat"}', qr/type must be/ ],
    [ '{"type":"group","members":"bob"}', qr/members must be/ ],
    [ '{"type":"group","members":["ok","not ok"]}', qr/valid userIds/ ],
    [ '{"type":"group","name":7}', qr/name must be a string/ ],
    [ '{"type":"group","name":"' . ('n' x 129) . '"}', qr/128/ ],
    [ '{"type":"group","type":"direct"}', qr/duplicate/ ],
    [ json_encode({ type => 'group',
                    members => [map { "u$_" } 1 .. 1001] }), qr/1000/ ],
);
for my $c (@cases) {
    my ($st, $j) = api(POST => '/conversations', 'alice', $c->[0]);
    ok($st == 400 && ($j->{error}{message} // '') =~ $c->[1],
       "400 for $c->[1]") or diag("$st " . json_encode($j));
}
--- no_error_log
[error]



=== TEST 15: no token: 401 unauthorized with WWW-Authenticate
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- request
GET /chat/api/conversations
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer
Content-Type: application/json
--- response_body_like: "code":"unauthorized"
--- no_error_log
[error]



=== TEST 16: bad, expired and alg-none tokens are 401; malformed ones say so
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 9
--- perl
my %bad = (
    'wrong secret' => make_token('alice', secret => 'not-the-secret'),
    'expired'      => make_token('alice', ttl => -10),
    'alg none'     => make_token('alice', alg => 'none'),
    'garbage'      => 'x.y.z',
    'bad sub'      => make_token('not a user'),
);
for my $k (sort keys %bad) {
    my ($st, $j) = api(GET => '/conversations', undef, undef,
                       token => $bad{$k});
    ok($st == 401 && $j->{error}{code} eq 'unauthorized', "$k: 401");
}
for my $t ('x.y.z', 'abc.def.ghi', 'not-a-jwt',
           'eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln') {
    my ($st, $j) = api(GET => '/conversations', undef, undef, token => $t);
    is($j->{error}{message}, 'malformed token', "$t: malformed token");
}
--- no_error_log
[error]



=== TEST 17: a body over the limit is 413 too_large
--- need_module
--- config
    location /chat/api/ {
        chat_api;
        chat_jwt_secret $TEST_NGINX_JWT_SECRET;
        chat_max_frame_size 4k;
    }
--- tests: 4
--- perl
my $big = json_encode({ type => 'group', name => 'x' x 5000 });
my ($st, $j) = api(POST => '/conversations', 'alice', $big);
is($st, 413, 'with Content-Length: 413');
is($j->{error}{code}, 'too_large', 'too_large');
($st) = http_request(undef, undef, undef, undef,
                     raw => "POST /chat/api/conversations HTTP/1.1\r\n"
                            . "Host: localhost\r\nConnection: close\r\n"
                            . "Authorization: Bearer " . make_token('alice')
                            . "\r\nTransfer-Encoding: chunked\r\n\r\n"
                            . sprintf("%x\r\n%s\r\n0\r\n\r\n",
                                      length $big, $big));
is($st, 413, 'chunked: 413');
($st) = api(GET => '/conversations', 'alice');
is($st, 200, 'the server is fine');
--- no_error_log
[error]



=== TEST 18: an unknown route is 404, a wrong method 405 with Allow
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 5
--- perl
my ($st, $j, $h) = api(GET => '/nothing/here', 'alice');
is($st, 404, 'unknown route: 404');
is($j->{error}{code}, 'not_found', 'not_found');
($st, $j, $h) = api(DELETE => '/conversations', 'alice');
is($st, 405, 'DELETE /conversations: 405');
is($h->{allow}, 'GET, POST', 'Allow');
($st) = api(GET => '/conversations/not%20an%20id', 'alice');
is($st, 404, 'an impossible id: 404');
--- no_error_log
[error]



=== TEST 19: users: created on first sight with the token's name, PUT /users/me
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 6
--- perl
my ($st, $j) = api(GET => '/users/me', undef, undef,
                   token => make_token('hugo', name => 'Hugo H.'));
is($st, 200, 'GET /users/me: 200');
is_deeply($j, { userId => 'hugo', displayName => 'Hugo H.',
                avatarUrl => undef }, 'created with the token name');
($st, $j) = api(PUT => '/users/me', 'hugo',
                { displayName => 'Hugo', avatarUrl => 'https://a/h.png' });
is($st, 200, 'PUT: 200');
($st, $j) = api(GET => '/users/hugo', 'iris');
is_deeply($j, { userId => 'hugo', displayName => 'Hugo',
                avatarUrl => 'https://a/h.png' }, 'others see it');
($st) = api(GET => '/users/nobody-here', 'iris');
is($st, 404, 'an unknown user: 404');
($st) = api(PUT => '/users/me', 'hugo', { displayName => 5 });
is($st, 400, 'a bad displayName: 400');
--- no_error_log
[error]



=== TEST 20: members named in a create call are created as users
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 2
--- perl
api(POST => '/conversations', 'jack', { type => 'group',
                                        members => ['kim.x@y-z'] });
my ($st, $j) = api(GET => '/users/kim.x@y-z', 'jack');
is($st, 200, 'known');
is($j->{displayName}, undef, 'no name yet');
--- no_error_log
[error]



=== TEST 21: the identity from an nginx variable (chat_identity)
--- need_module
--- config
    location /api/ {
        chat_api;
        chat_identity $http_x_user;
    }
--- tests: 4
--- perl
my ($st, $j) = api(GET => '/users/me', undef, undef, prefix => '/api',
                   headers => ['X-User: lou']);
is($st, 200, 'identity from the variable');
is($j->{userId}, 'lou', 'the userId');
($st) = api(GET => '/users/me', undef, undef, prefix => '/api');
is($st, 401, 'empty variable: 401');
($st) = api(GET => '/users/me', undef, undef, prefix => '/api',
            headers => ['X-User: not valid!']);
is($st, 401, 'not a userId: 401');
--- no_error_log
[error]



=== TEST 22: the location's name is the prefix, with or without a slash
--- need_module
--- config
    location /v2/chat {
        chat_api;
        chat_jwt_secret $TEST_NGINX_JWT_SECRET;
    }
--- tests: 2
--- perl
my ($st) = api(GET => '/conversations', 'alice', undef, prefix => '/v2/chat');
is($st, 200, '/v2/chat/conversations');
($st) = api(GET => '/conversations/', 'alice', undef, prefix => '/v2/chat');
is($st, 200, 'a trailing slash too');
--- no_error_log
[error]



=== TEST 23: PostgreSQL unavailable: 503 unavailable, quickly
--- need_module
--- no_chat_stores
--- http_config
    chat_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    chat_postgres "host=127.0.0.1 port=$TEST_NGINX_DEAD_PORT dbname=chat";
    chat_postgres_timeout 1s;
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 3
--- perl
my $t0 = Time::HiRes::time();
my ($st, $j) = api(GET => '/conversations', 'alice');
is($st, 503, 'status 503');
is($j->{error}{code}, 'unavailable', 'unavailable');
ok(Time::HiRes::time() - $t0 < 3, 'within the timeout');



=== TEST 24: a STOMP session creates its user on first sight, with the name
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 2
--- perl
my $s = stomp_connect('/ws/chat', user => 'mona', name => 'Mona L.');
my ($st, $j);
for (1 .. 40) {
    ($st, $j) = api(GET => '/users/mona', 'nick');
    last if $st == 200;
    Time::HiRes::sleep(0.05);
}
is($st, 200, 'the user exists');
is($j->{displayName}, 'Mona L.', 'named after the token');
--- no_error_log
[error]



=== TEST 25: sessions of new users at once: all created, with their names
--- need_module
--- config
    location = /ws/chat {
        chat_websocket;
        chat_jwt_secret $TEST_NGINX_JWT_SECRET;
    }
--- tests: 3
--- perl
# every CONNECT is sent before any CONNECTED is read: the users go to
# PostgreSQL in batches, the names through a text[] literal
my @names = ('Q "uote"', 'back\\slash', 'comma, {brace}', 'NULL', undef,
             "it's", " sp ace ");
my (@c, %want, $ok);
for my $i (0 .. 59) {
    my $c = ws_connect('/ws/chat') or die "no WebSocket\n";
    my $name = $names[$i % @names];
    push @c, [$c, "many$i", $name];
    $want{"many$i"} = $name // '<null>';
}
for my $x (@c) {
    my ($c, $user, $name) = @$x;
    $c->stomp_send('CONNECT', [['accept-version', '1.2'],
                               ['host', 'localhost'],
                               ['passcode', make_token($user,
                                                       name => $name)],
                               ['heart-beat', '0,0']], '');
}
$ok = grep { my $f = $_->[0]->stomp_recv;
             $f && $f->{command} eq 'CONNECTED' } @c;
is($ok, 60, 'every session connected');

my %got;
for (1 .. 60) {
    %got = map { $_->[0] => $_->[1] }
           pg_query(q{select id, coalesce(display_name, '<null>')
                      from users where id like 'many%'});
    last if keys %got == 60;
    Time::HiRes::sleep(0.05);
}
is_deeply(\%got, \%want, 'all 60 users, each with its name');

# a user first seen without a name gets the one a later token brings
my $s = stomp_connect('/ws/chat', user => 'many4', name => 'Later');
my $name;
for (1 .. 40) {
    ($name) = map { $_->[0] } pg_query(q{select display_name from users
                                         where id = 'many4'});
    last if defined $name && $name eq 'Later';
    Time::HiRes::sleep(0.05);
}
is($name, 'Later', 'the name fills the missing one');
--- no_error_log
[error]
[warn]



=== TEST 26: PostgreSQL down: sessions connect, creation is tried again
--- need_module
--- no_chat_stores
--- http_config
    chat_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    chat_postgres "host=127.0.0.1 port=$TEST_NGINX_DEAD_PORT dbname=chat";
    chat_postgres_timeout 1s;
--- config
    location = /ws/chat {
        chat_websocket;
        chat_jwt_secret $TEST_NGINX_JWT_SECRET;
    }
--- tests: 3
--- perl
my $s = stomp_connect('/ws/chat', user => 'nopg');
ok($s, 'CONNECTED without PostgreSQL');
ok(wait_for_log(qr/creating 1 user \("nopg"\) failed/, 5),
   'the creation failed');
# forgotten after the failure: the next session tries again
my $s2 = stomp_connect('/ws/chat', user => 'nopg');
ok(wait_for_log(qr/(?s:creating 1 user \("nopg"\) failed.*){2}/, 5),
   'tried again');



=== TEST 27: nginx's own errors inside the API location are JSON too
--- need_module
--- config
    location /chat/api/ {
        chat_api;
        chat_jwt_secret $TEST_NGINX_JWT_SECRET;
    }
    location /chat/closed/ {
        chat_api;
        chat_jwt_secret $TEST_NGINX_JWT_SECRET;
        deny all;
    }
--- tests: 15
--- perl
my $mb = json_encode({ type => 'group', name => 'x' x (1024 * 1024) });
my ($st, $j, $h) = api(POST => '/conversations', 'alice', $mb);
is($st, 413, '1 MB body, over client_max_body_size: 413');
like($h->{'content-type'}, qr{^application/json}, 'as JSON');
is_deeply($j, { error => { code => 'too_large',
                           message => 'the body is too large' } },
          'the error shape of PROTOCOL section 7');
is($h->{'content-length'}, length json_encode($j), 'its Content-Length');
my $b;
($st, $h, $b) = http_request(undef, undef, undef, undef,
                             raw => "POST /chat/api/conversations HTTP/1.1\r\n"
                                    . "Host: localhost\r\nConnection: close\r\n"
                                    . "Authorization: Bearer "
                                    . make_token('alice')
                                    . "\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    . sprintf("%x\r\n%s\r\n0\r\n\r\n",
                                              length $mb, $mb));
is($st, 413, 'chunked, over client_max_body_size: 413');
is(eval { json_decode($b)->{error}{code} }, 'too_large', 'as JSON');
($st, $j, $h) = api(HEAD => '/conversations', 'alice', $mb);
is($st, 413, 'HEAD: 413');
like($h->{'content-type'}, qr{^application/json}, 'as JSON, without a body');
($st, $j, $h) = api(GET => '/chat/closed/conversations', 'alice');
is($st, 403, 'denied by nginx: 403');
like($h->{'content-type'}, qr{^application/json}, 'as JSON');
is($j->{error}{code}, 'forbidden', 'code forbidden');
($st, $h, $b) = http_request(TRACE => '/chat/api/conversations');
is($st, 405, 'TRACE, refused before the location is chosen: 405');
is(eval { json_decode($b)->{error}{code} }, 'method_not_allowed',
   'as JSON');
($st, $h) = http_request(TRACE => '/elsewhere');
like($h->{'content-type'}, qr{^text/html}, 'outside the API: nginx\'s page');
($st, $j) = api(GET => '/conversations', 'alice');
is($st, 200, 'the server is fine');
--- error_log
client intended to send too large
--- no_error_log
[crit]
[alert]
