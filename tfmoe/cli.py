"""One error line instead of a traceback, for the absl scripts in `experiments/`.

```python
fail = cli.failer("pretrain.py")       # fail("--x is wrong") -> stderr line, exit 2
app.run(main, flags_parser=cli.flags_parser("pretrain.py"))
```
"""

import sys

from absl import flags


def failer(prog):
    """`fail(message)`: prints `PROG: error: MESSAGE` on stderr and exits with status 2."""

    def fail(message):
        print(f"{prog}: error: {message}", file=sys.stderr)
        sys.exit(2)

    return fail


def flags_parser(prog, flag_values=flags.FLAGS):
    """An `app.run(flags_parser=...)` that reports a bad flag (e.g. `--steps_per_epoch=-5`,
    below its `lower_bound`) as one `error:` line naming it, with exit status 2."""
    fail = failer(prog)

    def parse(argv):
        try:
            return flag_values(argv)
        except flags.Error as error:
            fail(str(error).strip().splitlines()[0])

    return parse
