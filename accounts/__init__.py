"""Accounts: who may sign in, and everything an account owns outside the price data.

Credentials (bcrypt hashes, roles) live in the streamlit-authenticator credentials document
(`store`), never in the database; the `users` table mirrors each account (`users`) so that the
rest of the data can refer to it. Sign-ins are server-side sessions (`sessions`), guarded by a
throttle (`throttle`); forgotten passwords are recovered with mailed codes (`recovery`); the
`Accounts` service (`service`) ties them together for pages and the `auth.py` command line.

Nothing in this package imports streamlit or streamlit-authenticator: `authenticator.py`, in the
UI layer, is the one module that talks to the library.
"""
