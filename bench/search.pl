#!/usr/bin/perl
# search.pl: the search scenario: GET /search's query (chat_api_search,
# sql/010_search.sql) on a large messages table, timed in PostgreSQL.
#
# usage: perl bench/search.pl --dsn DSN [--rows N] [--convs C] [--users U]
#            [--repeat R] [--reuse]
#
# 1. fills an empty database (migrated) with U users, C group
#    conversations of 10 members each, and N messages of 8 words drawn
#    from a vocabulary of 20,000 (log-uniform: a few words are in many
#    messages, most in few), spread over the conversations and a year;
#    (--reuse: the database was filled by an earlier run: only step 3);
# 2. VACUUM ANALYZE (autovacuum would, soon: it empties the GIN index's
#    pending list of new entries, which every search reads otherwise);
# 3. runs each query R times through one psql session and prints, per
#    query, how many messages matched in all, and the median, 95th
#    percentile and worst time of a search (psql's \timing, the server's
#    whole answer: JSON of the page included).
# The figures are a property of this machine, its load and PostgreSQL's
# settings: the script prints them, nothing asserts them.

use strict;
use warnings;
use Getopt::Long;
use IPC::Open2;
use Time::HiRes qw(time);

my %o = (rows => 1_000_000, convs => 2000, users => 1000, repeat => 20);
GetOptions(\%o, 'dsn=s', 'rows=i', 'convs=i', 'users=i', 'repeat=i',
           'reuse')
    or die "bad options\n";
defined $o{dsn} or die "--dsn is needed\n";

# one statement through psql's standard input (no shell quoting)
sub psql {
    my ($sql) = @_;
    my $pid = open2(my $out, my $in, 'psql', $o{dsn}, '-X', '-q', '-At',
                    '-v', 'ON_ERROR_STOP=1');
    print $in "$sql;\n";
    close $in;
    my $res = join '', <$out>;
    waitpid($pid, 0);
    die "psql failed: $sql\n" if $?;
    chomp $res;
    return $res;
}

my $have = psql("SELECT count(*) FROM messages");
die "the database has messages already: give an empty one, or --reuse\n"
    if $have > 0 && !$o{reuse};

my $t0 = time;
goto QUERIES if $o{reuse};

print "filling: $o{users} users, $o{convs} conversations, $o{rows} messages\n";

psql("INSERT INTO users (id) SELECT 'u' || i FROM generate_series(1, $o{users}) i");
psql("INSERT INTO conversations (id, type, name, created_by)"
     . " SELECT 'c_' || i, 'group', 'g' || i, 'u1'"
     . " FROM generate_series(1, $o{convs}) i");
# member j of conversation i: users i*7+j*13 (mod U), 10 distinct ones
psql("INSERT INTO conversation_members (conversation_id, user_id)"
     . " SELECT DISTINCT 'c_' || i, 'u' || (1 + (i * 7 + j * 13) % $o{users})"
     . " FROM generate_series(1, $o{convs}) i, generate_series(0, 9) j");

# in chunks, so that one statement does not hold everything
my $chunk = 100_000;
for (my $done = 0; $done < $o{rows}; $done += $chunk) {
    my $n = $o{rows} - $done < $chunk ? $o{rows} - $done : $chunk;
    psql("INSERT INTO messages (id, conversation_id, seq, sender_id,"
         . " content, created_at)"
         . " SELECT $done + g, 'c_' || (1 + (($done + g) % $o{convs})),"
         . " ($done + g) / $o{convs} + 1, 'u1',"
         . " (SELECT string_agg('w' || floor(exp(random() * ln(20000)))::int,"
         . " ' ') FROM generate_series(1, 8) k WHERE g > 0),"
         . " now() - interval '365 days' * random()"
         . " FROM generate_series(1, $n) g");
    printf "  %d rows (%.0f s)\n", $done + $n, time - $t0;
}

psql("VACUUM ANALYZE messages");
printf "filled in %.0f s; table and indexes: %s\n", time - $t0,
       psql("SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid)))"
            . " FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid"
            . " WHERE i.inhparent = 'messages'::regclass");

QUERIES:

# the member of conversation c_1 (u8: 1 + 7 % U), and the queries: a rare
# word, a middling one, a common one, two words, a phrase, a word absent
my $user = 'u' . (1 + 7 % $o{users});
my @queries = (
    ['rare word (w15000)', 'w15000', undef],
    ['middling word (w500)', 'w500', undef],
    ['common word (w2)', 'w2', undef],
    ['two words (w3 w40)', 'w3 w40', undef],
    ['phrase ("w2 w3")', '"w2 w3"', undef],
    ['absent word', 'nosuchword', undef],
    ['common word, one conversation', 'w2', 'c_1'],
);

printf "\n%-32s %9s %9s %9s %9s\n", 'query (user ' . $user . ', 20 a page)',
       'matched', 'p50 ms', 'p95 ms', 'max ms';

for my $q (@queries) {
    my ($name, $text, $conv) = @$q;
    my $cid = defined $conv ? "'$conv'" : 'NULL';
    my $matched = psql("SELECT count(*) FROM messages m"
        . " WHERE m.search @@ websearch_to_tsquery('simple', '$text')"
        . " AND m.conversation_id IN (SELECT conversation_id"
        . " FROM conversation_members WHERE user_id = '$user'"
        . ($conv ? " AND conversation_id = '$conv'" : '') . ")");

    my $pid = open2(my $out, my $in, 'psql', $o{dsn}, '-X', '-q', '-At');
    print $in "\\timing on\n";
    print $in "SELECT length(body) FROM chat_api_search('$user', '',"
              . " '$text', $cid, 20, 0);\n" for 1 .. $o{repeat};
    close $in;
    my @ms;
    while (<$out>) {
        push @ms, $1 if /^Time: ([\d.]+) ms/;
    }
    waitpid($pid, 0);

    @ms = sort { $a <=> $b } @ms;
    die "psql gave no timings\n" unless @ms;
    printf "%-32s %9d %9.1f %9.1f %9.1f\n", $name, $matched,
           $ms[int($#ms / 2)], $ms[int($#ms * 0.95)], $ms[-1];
}
