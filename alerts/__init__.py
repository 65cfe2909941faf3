"""Price alerts by e-mail: the rules people set (rules), what a pass makes true (evaluate), the mails (compose),
sending them within the daily cap (outbox) and the signed one-click unsubscribe (unsubscribe).

Above the accounts (it mails people) and the read side (it reads prices); `etl.py serve` hands the scheduler
`outbox.after_pass` to run after each successful pass, so the pipeline imports none of this.
"""
