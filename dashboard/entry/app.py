"""The dashboard's Streamlit script: ``villagetwin dashboard`` serves it through
dashboard/serve.py, and page tests run it (``AppTest.from_file``, tests/support.DASHBOARD_APP).

It lives in a folder of its own, not beside dashboard/pages/, because Streamlit takes a
``pages/`` folder next to its main script for its older file-per-page navigation: a URL such as
``/overview`` (a deep link, or any rerun in a fresh server or in AppTest) would then run
dashboard/pages/overview.py as a script of its own, which draws nothing."""

from dashboard.app import main

main()
