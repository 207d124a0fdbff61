# 132-attachments.t: attachments (PROTOCOL.md section 11): nginx streams the
# upload to a file and the file is moved into the store, the size limit
# and the type allow-list answer before anything is kept, and the file is
# served by nginx from an internal location to members only.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

my $secret = $ENV{TEST_NGINX_JWT_SECRET} // '';

# the store is the client body temp path itself: one file system, so the
# upload is moved by a rename
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(more => <<"_EOC_");
    location /chat/api/attachments {
        chat_attachments $ENV{TEST_NGINX_SERVROOT}/attach /chat/files/;
        chat_attachment_types image/png text/plain;
        chat_jwt_secret $secret;
        client_max_body_size 64k;
        client_body_buffer_size 1m;
        client_body_temp_path $ENV{TEST_NGINX_SERVROOT}/attach;
    }
    location /chat/files/ {
        internal;
        alias $ENV{TEST_NGINX_SERVROOT}/attach/;
    }
_EOC_

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;

# POST a body as user: (status, decoded JSON)
sub upload {
    my ($user, $conv, $type, $body) = @_;
    my ($st, $h, $b) = http_request('POST',
        "/chat/api/attachments?conversationId=$conv",
        ['Authorization: Bearer ' . make_token($user),
         "Content-Type: $type"], $body);
    my $j = eval { json_decode($b) };
    return ($st, $j, $b);
}

sub download {
    my ($user, $url) = @_;
    return http_request('GET', $url,
                        ['Authorization: Bearer ' . make_token($user)]);
}

# the files in the store
sub stored {
    opendir(my $d, servroot() . '/attach') or return ();
    return grep { /^a_/ } readdir $d;
}

package main;

run_tests();

__DATA__

=== TEST 1: a member uploads, members download the same bytes with its type, others get 403
--- tests: 11
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('alice1', 'group', 'bob1');
my $png = "\x89PNG\r\n\x1a\n" . join('', map { chr($_ % 256) } 1 .. 20000);
my ($st, $j) = upload('alice1', $conv, 'image/png', $png);
is($st, 201, 'uploaded: 201');
like($j->{attachmentId}, qr/^a_[0-9a-f]{32}$/, 'an id nobody guesses');
is($j->{size}, length $png, 'its size');
is($j->{contentType}, 'image/png', 'its type');
ok(-s servroot() . "/attach/$j->{attachmentId}" == length $png,
   'in the store as a file named by its id');
my ($st2, $h2, $b2) = download('bob1', $j->{url});
is($st2, 200, 'another member downloads it');
ok($b2 eq $png, 'the same bytes');
like($h2->{'content-type'} // '', qr{^image/png}, 'with its type');
is($h2->{'x-content-type-options'}, 'nosniff', 'never sniffed');
my ($st3) = download('mallory1', $j->{url});
is($st3, 403, 'a non-member: 403');
my ($st4) = http_request('GET', "/chat/files/$j->{attachmentId}", []);
is($st4, 404, 'the store\'s location is internal');
--- no_error_log
[error]



=== TEST 2: too large, a type outside the list, not a member, bad ids: refused, nothing kept
--- tests: 8
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('alice2', 'group', 'bob2');
my $before = () = stored();
my ($st) = upload('alice2', $conv, 'image/png', 'x' x (65 * 1024));
is($st, 413, 'over client_max_body_size: 413');
my ($st2, $j2) = upload('alice2', $conv, 'text/html', '<script>');
is($st2, 415, 'text/html is not on the list: 415');
is($j2->{error}{code}, 'unsupported_type', 'a JSON error');
my ($st3) = upload('carol2', $conv, 'text/plain', 'hello');
is($st3, 403, 'not a member: 403');
my ($st4) = upload('alice2', 'c_nosuchconversation', 'text/plain', 'hi');
is($st4, 404, 'no such conversation: 404');
is(scalar(() = stored()), $before, 'nothing kept of any of them');
my ($st5) = download('alice2', '/chat/api/attachments/a_'
                               . ('0' x 32));
is($st5, 404, 'no such attachment: 404');
my ($st6) = download('alice2', '/chat/api/attachments/../../etc/passwd');
ok($st6 == 404 || $st6 == 400, 'a path is no id');
--- no_error_log
[crit]
[alert]
