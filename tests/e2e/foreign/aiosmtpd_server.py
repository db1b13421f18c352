#!/usr/bin/env python3
"""An SMTP server we did not write, for the `foreign_smtp` end-to-end scenarios.

Started by tests/e2e/support/foreign_smtp.rs (under the harness watchdog, with
Debian's /usr/bin/python3 and its python3-aiosmtpd package). It is aiosmtpd's
own SMTP implementation (command parsing, DATA un-stuffing, STARTTLS); what
this file adds is only:

- answers per recipient by local part: `defer-*` gets 451 4.7.1, `bounce-*`
  gets 550 5.1.1, every other recipient 250;
- PIPELINING in the EHLO reply (aiosmtpd handles pipelined commands but does not
  advertise them), unless --no-pipelining;
- STARTTLS with the given certificate, unless no --cert is given;
- SMTPUTF8 (UTF-8 addresses) only with --smtputf8; without it aiosmtpd answers
  a non-ASCII command with 500;
- a record of what it saw, one JSON object per line, appended to --events:
  `{"event": "rcpt", ...}` for every RCPT TO (accepted or refused) and
  `{"event": "message", ...}` for every accepted DATA, with the exact message
  bytes after un-stuffing (hex), the MAIL/RCPT parameters the client used,
  whether the session was TLS, whether the RCPT TO had already arrived when
  MAIL FROM was answered (pipelined), and Python's own MIME parse of the
  message (Subject, Message-ID, the decoded text/plain part), and
  `{"event": "error", ...}` for every reply that says the client broke the
  protocol (500-504, 555: syntax, unknown command, bad sequence, parameters).

When listening it prints `listening on 127.0.0.1:<port>` (port chosen by the
OS) on stdout, which the harness reads from its log. It runs until killed.
"""

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys
from email import policy
from email.parser import BytesParser

from aiosmtpd.smtp import SMTP


# Replies that blame the client: a command or parameter aiosmtpd could not
# accept as sent.
CLIENT_ERRORS = ("500", "501", "502", "503", "504", "555")


class JudgingSMTP(SMTP):
    """aiosmtpd's SMTP, recording every reply that blames the client."""

    async def push(self, status):
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        if text[:3] in CLIENT_ERRORS:
            self.event_handler.record({"event": "error", "reply": text})
        await super().push(status)


class Recorder:
    """The aiosmtpd handler: applies the recipient rules and records events."""

    def __init__(self, events_path, pipelining):
        self.events_path = events_path
        self.pipelining = pipelining
        self.messages = 0

    def record(self, event):
        line = json.dumps(event, ensure_ascii=True) + "\n"
        # One write per line on an O_APPEND file: readers never see half a line
        # followed by another event.
        fd = os.open(self.events_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("ascii"))
        finally:
            os.close(fd)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            # Before the last line ("250 HELP"), which must stay last.
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # What the client had already sent when MAIL FROM is answered: with
        # PIPELINING our client writes MAIL FROM and RCPT TO in one go, and
        # without it it must wait for this reply before sending RCPT TO.
        buffered = bytes(getattr(server._reader, "_buffer", b""))
        envelope.pipelined = buffered.upper().startswith(b"RCPT TO:")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("defer-"):
            reply = "451 4.7.1 Greylisted, try again later (foreign)"
        elif local.startswith("bounce-"):
            reply = "550 5.1.1 No such user here (foreign)"
        else:
            reply = "250 2.1.5 OK"
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        self.record(
            {
                "event": "rcpt",
                "rcpt": address,
                "reply": reply,
                "tls": session.ssl is not None,
            }
        )
        return reply

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or b""
        self.messages += 1
        event = {
            "event": "message",
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "mail_options": list(envelope.mail_options),
            "rcpt_options": list(envelope.rcpt_options),
            "smtp_utf8": bool(envelope.smtp_utf8),
            "tls": session.ssl is not None,
            "pipelined": bool(getattr(envelope, "pipelined", False)),
            "ehlo": session.host_name,
            "content_hex": content.hex(),
        }
        event.update(parse(content))
        self.record(event)
        return f"250 2.0.0 OK queued as foreign-{self.messages}"


def parse(content):
    """Python's own reading of the message: headers decoded, text part decoded."""
    try:
        message = BytesParser(policy=policy.default).parsebytes(content)
        part = message.get_body(preferencelist=("plain",))
        return {
            "subject": str(message.get("subject", "")),
            "message_id": str(message.get("message-id", "")),
            "text_cte": str(part.get("content-transfer-encoding", "7bit")) if part else None,
            "text": part.get_content() if part else None,
            "parse_error": None,
        }
    except Exception as error:  # recorded, so the test shows what broke
        return {"parse_error": repr(error)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--events", required=True)
    parser.add_argument("--cert", help="PEM certificate: offer STARTTLS")
    parser.add_argument("--key", help="PEM private key of --cert")
    parser.add_argument("--no-pipelining", action="store_true")
    parser.add_argument("--smtputf8", action="store_true", help="offer SMTPUTF8")
    args = parser.parse_args()
    # The harness watchdog ignores SIGTERM and an ignored signal stays ignored
    # across exec: restore the default so its `kill -TERM` stops us.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    tls_context = None
    if args.cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.cert, args.key)
    handler = Recorder(args.events, pipelining=not args.no_pipelining)

    def factory():
        return JudgingSMTP(
            handler,
            hostname="foreign.test",
            decode_data=False,  # raw bytes; also makes aiosmtpd offer 8BITMIME
            enable_SMTPUTF8=args.smtputf8,
            tls_context=tls_context,
            require_starttls=False,  # let the client decide: the test judges it
        )

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(factory, host=args.host, port=0))
    port = server.sockets[0].getsockname()[1]
    print(f"listening on {args.host}:{port}", flush=True)
    loop.run_forever()


if __name__ == "__main__":
    sys.exit(main())
