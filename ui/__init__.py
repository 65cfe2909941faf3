"""The UI layer: the widgets and the app shell the pages are drawn with. Only it and the pages import Streamlit.

shell          resources shared by every page, the navigation and sign-in frame
widgets        shared widgets, and the one choke point that escapes text for Markdown
finder_ui      the finder's controls, results and station detail
map_ui         the price map
reads          what only an ETL pass changes, cached per process until the next pass
authenticator  the one adapter around streamlit-authenticator
"""
