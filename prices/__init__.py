"""The read side and what people keep: finding stations and their prices, places, opening hours,
detours, savings, and each person's stations, fuels and consumption.

Functions take a SQLAlchemy session or engine and return rows or plain values; nothing here
imports Streamlit.
"""
