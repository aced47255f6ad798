# e2e_app.pl: the Perl "local app" of the exec end-to-end tests (tests/integration/exec/): a pod
# file, the pod's env and a TCP echo to the service by name. Prints `key=value` lines.
use strict;
use warnings;
use IO::Socket::INET;

open(my $f, "<", "/app/hello.txt") or die "open /app/hello.txt: $!";
my $text = <$f>;
chomp $text;
print "file=$text\n";
print "env=$ENV{MX_POD_ENV}\n";
my $s = IO::Socket::INET->new(PeerAddr => "echo", PeerPort => 7, Proto => "tcp", Timeout => 5)
    or die "connect echo:7: $@";
print $s "perl echo\n";
my $line = <$s>;
chomp $line;
print "echo=$line\n";
print "peer=", $s->peerhost, "\n";
