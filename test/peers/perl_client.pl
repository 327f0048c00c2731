#!/usr/bin/perl
# Independent draft-75 / draft-76 (and RFC 6455) client for the tests,
# built on Debian's Protocol::WebSocket (libprotocol-websocket-perl).
#   perl_client.pl URL VERSION MESSAGE...
# VERSION: draft-hixie-75 | draft-ietf-hybi-00 | draft-ietf-hybi-17
# Sends each message, prints "RECV <text>" for each reply, then closes
# (the draft-76 0xFF 0x00 handshake) and prints "CLOSED <how>".
use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Protocol::WebSocket::Handshake::Client;
use Protocol::WebSocket::Frame;

binmode STDOUT, ':encoding(UTF-8)';
my ($url, $version, @messages) = @ARGV;
my ($host, $port) = $url =~ m{^ws://([^:/]+):(\d+)/} or die "bad url $url\n";
my $sock = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port,
                                 Proto => 'tcp', Timeout => 10)
    or die "connect: $!\n";
binmode $sock;
my $hs = Protocol::WebSocket::Handshake::Client->new(url => $url, version => $version);
print $sock $hs->to_string;
my $sel = IO::Select->new($sock);
my $buf = '';
until ($hs->is_done) {
    $sel->can_read(10) or die "handshake timeout\n";
    my $n = sysread($sock, my $chunk, 4096);
    die "handshake: connection closed\n" unless $n;
    $buf .= $chunk;
    $hs->parse($buf) or die "handshake error: " . ($hs->error || 'unknown') . "\n";
}
print "OPEN\n";
my $frame = Protocol::WebSocket::Frame->new(version => $version);
$frame->append($buf) if length $buf;
for my $message (@messages) {
    my $out = Protocol::WebSocket::Frame->new(version => $version, buffer => $message);
    print $sock $out->to_bytes;
    my $got;
    while (!defined($got = $frame->next)) {
        $sel->can_read(10) or die "receive timeout\n";
        my $n = sysread($sock, my $chunk, 65536);
        die "connection closed while waiting\n" unless $n;
        $frame->append($chunk);
    }
    utf8::decode($got);
    print "RECV $got\n";
}
if ($version eq 'draft-ietf-hybi-00') {
    print $sock "\xff\x00";
    my $reply = '';
    while (length($reply) < 2 && $sel->can_read(10)) {
        my $n = sysread($sock, my $chunk, 2 - length $reply);
        last unless $n;
        $reply .= $chunk;
    }
    print $reply eq "\xff\x00" ? "CLOSED handshake\n" : "CLOSED without handshake\n";
} else {
    print "CLOSED eof\n";
}
close $sock;
