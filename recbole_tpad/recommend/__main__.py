"""Top-k recommendations of a trained model for sessions read from a file.

    python -m recbole_tpad.recommend --model_file=saved/TPAD-....pth --sessions=sessions.txt --topk=20
    python -m recbole_tpad.recommend --model_file=saved/SASRec-....pth --sessions=s.txt --exclude_seen --output=top.csv
    python -m recbole_tpad.recommend --model_file=saved/TPAD-....pth --sessions=s.txt --item_file=new/beauty.item

``--sessions``: one session a line, its item tokens (as in the .inter file) oldest first, separated
by spaces or tabs. Output: one line per session, JSON lines (``{"session": line number, "items":
[...], "scores": [...], "unknown": [...]}``) or, for an ``--output`` ending in ``.csv``, CSV with
columns ``session,items,scores`` (space-separated). Without ``--output`` JSON lines go to stdout.
"""

import argparse
import csv
import json
import sys
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_file", required=True, help="checkpoint saved by run_recbole_tpad (its .sidecar.pth beside it)")
    parser.add_argument("--sessions", required=True, help="file: one session a line, item tokens oldest first")
    parser.add_argument("--topk", type=int, default=20, help="items per session (default 20)")
    parser.add_argument("--exclude_seen", action="store_true", help="never recommend an item of the session itself")
    parser.add_argument("--output", default=None, help="output file (.csv: CSV, else JSON lines); default stdout")
    parser.add_argument("--item_file", default=None,
                        help="a .item file with items added after training (TPAD, KDSR: encoded and scored; ID-only models refuse)")
    parser.add_argument("--batch_size", type=int, default=256, help="sessions scored at once")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: a GPU if there is one)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of user errors")
    return parser.parse_args(argv)


def read_sessions(path):
    from recbole_tpad.errors import DataError

    try:
        with open(path, encoding="utf-8") as f:
            return [line.split() for line in f]
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"--sessions {path}: cannot read it ({error}); give a UTF-8 text file, one session a line.") from error


def write_recommendations(results, output):
    rows = [{"session": n, "items": r.items, "scores": [round(s, 6) for s in r.scores], "unknown": r.unknown,
             **({"note": r.note} if r.note else {})} for n, r in enumerate(results, start=1)]
    if output and Path(output).suffix.lower() == ".csv":
        with open(output, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["session", "items", "scores"])
            for row in rows:
                writer.writerow([row["session"], " ".join(row["items"]), " ".join(map(str, row["scores"]))])
        return
    stream = open(output, "w", encoding="utf-8") if output else sys.stdout
    try:
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if output:
            stream.close()


def main(argv=None):
    args = parse_args(argv)
    from recbole_tpad.errors import DataError, exit_status
    from recbole_tpad.recommend import load_recommender

    def command():
        sessions = read_sessions(args.sessions)
        recommender = load_recommender(args.model_file, args.device)
        if args.item_file:
            recommender.add_items(args.item_file)
        results = recommender.recommend(sessions, topk=args.topk, exclude_seen=args.exclude_seen,
                                        batch_size=args.batch_size)
        if sessions and not any(r.items for r in results):
            raise DataError(f"--sessions {args.sessions}: none of its {len(sessions)} sessions has an item of dataset "
                              f"'{recommender.config['dataset']}' ({args.model_file}'s); is it another dataset's file?")
        write_recommendations(results, args.output)
        return 0

    return exit_status(command, args.debug)


if __name__ == "__main__":
    sys.exit(main())
