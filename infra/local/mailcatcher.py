"""A development SMTP server: keeps every message it is given, sends none.

    python infra/local/mailcatcher.py [--host 127.0.0.1] [--port 1025] [--folder .local/mail]

`make run` starts it so that messaging's email can be seen without a real
mail server: each message is written to ``<folder>/<time>-<n>.eml`` and one
line per message goes to the log. (docker-compose uses mailpit instead.)
"""
import argparse
import itertools
import os
import time
from email import message_from_bytes

from aiosmtpd.controller import Controller


class KeepMessages:
    def __init__(self, folder):
        self.folder = folder
        self.numbers = itertools.count(1)
        os.makedirs(folder, exist_ok=True)

    async def handle_DATA(self, server, session, envelope):
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{next(self.numbers):05d}.eml"
        with open(os.path.join(self.folder, name), "wb") as handle:
            handle.write(envelope.content)
        subject = message_from_bytes(envelope.content).get("Subject", "")
        print(f"mail {name} to {', '.join(envelope.rcpt_tos)}: {subject}", flush=True)
        return "250 Message accepted"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--folder", default=os.path.join(".local", "mail"))
    args = parser.parse_args()
    controller = Controller(KeepMessages(args.folder), hostname=args.host, port=args.port)
    controller.start()
    print(f"mailcatcher on {args.host}:{args.port}, messages in {args.folder}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
