"""The MLflow side: the tracking store, registered versions with their lineage, the champion
alias (promotion.py), and the one generation interface every version loads as (pyfunc.py)."""
