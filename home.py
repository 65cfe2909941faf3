"""Carburoam's entry point (`streamlit run home.py`): the frame around every page."""

import streamlit as st

from ui import shell

st.set_page_config(page_title="Carburoam", page_icon=":material/local_gas_station:", layout="wide")
app = shell.resources()
shell.ensure_scheduler(app)
account = shell.sign_in(app)
page = st.navigation(shell.pages_for(account))
shell.rerun_first_run(page)
shell.offer_sign_in(app, page)
shell.draw_sidebar(app, account)
shell.fold_sidebar_on_phones(page)
shell.show_flash(page)
page.run()
shell.settle_the_heap()
