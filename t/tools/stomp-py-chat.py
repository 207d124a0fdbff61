#!/usr/bin/python3
# stomp-py-chat.py: a chat user on stomp.py (Debian's python3-stomp) over
# chat_stomp, TCP or TLS, for t/110-stomp-tcp.t: it subscribes to its
# messages, says READY, sends COUNT messages "<prefix>N" to a conversation,
# each with a receipt, and reports on stdout, one line each:
#
#   READY                        subscribed (its RECEIPT came)
#   RECEIPT <id>                 a RECEIPT, in the order they came
#   MESSAGE <seq> <sender> <content>   a MESSAGE on /user/queue/messages
#   DONE                         PEER messages of the other user came and
#                                the DISCONNECT's RECEIPT too
#   ERROR <what>                 anything else (then exit 1)
#
# usage: stomp-py-chat.py HOST PORT TOKEN CONV COUNT PREFIX PEER
#        [--tls CA_FILE] [--timeout SECONDS]

import json
import sys
import threading
import time

import stomp


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Listener(stomp.ConnectionListener):
    def __init__(self):
        self.cond = threading.Condition()
        self.receipts = []
        self.peer_messages = 0
        self.peer = None
        self.error = None

    def on_receipt(self, frame):
        with self.cond:
            rid = frame.headers.get("receipt-id", "")
            self.receipts.append(rid)
            out("RECEIPT " + rid)
            self.cond.notify_all()

    def on_message(self, frame):
        with self.cond:
            if frame.headers.get("destination") != "/user/queue/messages":
                out("ERROR rejection " + frame.body)
                self.error = frame.body
            else:
                m = json.loads(frame.body)
                out("MESSAGE %s %s %s" % (m["seq"], m["senderId"],
                                          m["content"]))
                if m["senderId"] == self.peer:
                    self.peer_messages += 1
            self.cond.notify_all()

    def on_error(self, frame):
        with self.cond:
            self.error = frame.headers.get("message", "ERROR frame")
            out("ERROR frame " + self.error)
            self.cond.notify_all()

    def wait(self, pred, timeout):
        with self.cond:
            return self.cond.wait_for(
                lambda: pred() or self.error is not None, timeout)


def main(argv):
    host, port, token, conv, count, prefix, peer = argv[1:8]
    port, count = int(port), int(count)
    opts = argv[8:]
    tls = opts[opts.index("--tls") + 1] if "--tls" in opts else None
    timeout = float(opts[opts.index("--timeout") + 1]) \
        if "--timeout" in opts else 10.0

    conn = stomp.Connection([(host, port)], heartbeats=(0, 0),
                            timeout=timeout)
    if tls:
        # the server's certificate is verified (CA_FILE), hostname included
        conn.set_ssl(for_hosts=[(host, port)], ca_certs=tls)

    lst = Listener()
    lst.peer = peer
    conn.set_listener("chat", lst)
    conn.connect(passcode=token, wait=True)

    conn.subscribe("/user/queue/messages", id="m", ack="auto",
                   receipt="sub-m")
    conn.subscribe("/user/queue/errors", id="e", ack="auto",
                   receipt="sub-e")
    if not lst.wait(lambda: len(lst.receipts) == 2, timeout):
        out("ERROR no RECEIPT for the subscriptions")
        return 1
    out("READY")

    for i in range(1, count + 1):
        body = json.dumps({"conversationId": conv,
                           "content": "%s%d" % (prefix, i)})
        conn.send("/app/chat.send", body, content_type="application/json",
                  receipt="r%d" % i)

    if not lst.wait(lambda: len(lst.receipts) == 2 + count
                    and lst.peer_messages >= count, timeout):
        out("ERROR timed out: %d receipts, %d messages of %s"
            % (len(lst.receipts) - 2, lst.peer_messages, peer))
        return 1

    if lst.error is not None:
        return 1

    conn.disconnect(receipt="bye")
    if "bye" not in lst.receipts:
        out("ERROR no RECEIPT for DISCONNECT")
        return 1

    out("DONE")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception as e:
        out("ERROR exception %s: %s" % (type(e).__name__, e))
        sys.exit(1)
