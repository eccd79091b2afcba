"""DuckDB schema of bridge's state (DDL is the single source of column names and types).

Bulk tables carry no PRIMARY KEY: DuckDB maintains an ART index per key, which made replacing an
instance's rows ~10x slower; uniqueness of (preview_id, trading_day[, instrument]) is guaranteed
by the engine and checked in tests.

Units: quantities and amounts in shares; prices currency/share; values, cash, fees and PnL in the
account currency; drawdown and turnover as fractions.
"""

PREVIEW_TABLES = ("preview_strategy", "preview_trade", "preview_position", "preview_account",
                  "preview_cut")

DDL = {
    # one row per preview instance (seed 004 preview_strategy)
    "preview_strategy": """
        preview_id VARCHAR PRIMARY KEY, display_name VARCHAR, strategy VARCHAR, signal VARCHAR,
        params VARCHAR,            -- JSON of the instance's parameters
        initial_capital DOUBLE, deal_price VARCHAR, market VARCHAR, status VARCHAR,
        data_hash VARCHAR,         -- version of the bars the run used
        start_date DATE, end_date DATE, created_at TIMESTAMP""",
    # virtual fills (seed 004 preview_trade); datetime is exchange-local time of the deal price
    "preview_trade": """
        preview_id VARCHAR, trading_day DATE, datetime TIMESTAMP, instrument VARCHAR,
        side VARCHAR, quantity DOUBLE,
        deal_price DOUBLE,         -- price filled at (market_price moved by slippage)
        market_price DOUBLE,       -- the session's deal price (close or open) before slippage
        trade_value DOUBLE, fee DOUBLE,
        reason VARCHAR             -- '' for a planned trade, 'universe_exit' for a cash-out""",
    # end-of-day holdings (seed 004 preview_position)
    "preview_position": """
        preview_id VARCHAR, trading_day DATE, instrument VARCHAR, amount DOUBLE,
        avg_cost DOUBLE, last_price DOUBLE, market_value DOUBLE""",
    # end-of-day settlement (seed 004 preview_account + peak/drawdown)
    "preview_account": """
        preview_id VARCHAR, trading_day DATE, cash DOUBLE, market_value DOUBLE,
        total_value DOUBLE, daily_pnl DOUBLE, cum_pnl DOUBLE, peak DOUBLE, drawdown DOUBLE,
        turnover DOUBLE,           -- traded value / previous total_value
        cost DOUBLE, n_trades BIGINT""",
    # intended trades the planner cut or dropped, with the reason
    "preview_cut": """
        preview_id VARCHAR, trading_day DATE, instrument VARCHAR, side VARCHAR,
        intended_quantity DOUBLE, quantity DOUBLE, reason VARCHAR""",
    # DecisionSnapshot: frozen inputs + parameters + data version of one planning decision
    "decision_snapshot": """
        snapshot_id VARCHAR PRIMARY KEY, created_at TIMESTAMP, signal_date DATE, trade_date DATE,
        market VARCHAR, params VARCHAR, data_hash VARCHAR, inputs_hash VARCHAR, cash DOUBLE,
        cash_after DOUBLE, n_orders BIGINT""",
    "snapshot_signal": "snapshot_id VARCHAR, instrument VARCHAR, score DOUBLE",
    "snapshot_position": """
        snapshot_id VARCHAR, instrument VARCHAR, amount DOUBLE, sellable DOUBLE, days_held BIGINT""",
    "snapshot_market": """
        snapshot_id VARCHAR, instrument VARCHAR, price DOUBLE, tradable BOOLEAN, volume DOUBLE,
        limit_up BOOLEAN, limit_down BOOLEAN""",
    "snapshot_target": """
        snapshot_id VARCHAR, instrument VARCHAR, target_amount DOUBLE, action VARCHAR, score DOUBLE""",
    # the orders planned from a snapshot (dropped trades included, with their reason)
    "planned_order": """
        snapshot_id VARCHAR, seq BIGINT, instrument VARCHAR, side VARCHAR, quantity DOUBLE,
        intended_quantity DOUBLE, order_type VARCHAR, price DOUBLE, limit_price DOUBLE,
        tick_rounding DOUBLE, value DOUBLE, fee DOUBLE, reason VARCHAR""",
    # ---- execution (paper/live): orders, fills, positions, account, runs, audit ----
    "trade_run": """
        run_id VARCHAR PRIMARY KEY, snapshot_id VARCHAR, mode VARCHAR, broker VARCHAR,
        strategy_id VARCHAR, started_ts_ms BIGINT, finished_ts_ms BIGINT, n_orders BIGINT,
        n_denied BIGINT, n_rejected BIGINT, n_filled BIGINT, n_inflight BIGINT, status VARCHAR""",
    # one row per order, written (status INITIALIZED) before anything is sent, then updated
    "exec_order": """
        client_order_id VARCHAR, run_id VARCHAR, mode VARCHAR, broker VARCHAR,
        strategy_id VARCHAR, decision_snapshot_id VARCHAR, instrument VARCHAR, side VARCHAR,
        quantity DOUBLE, order_type VARCHAR, limit_price DOUBLE, time_in_force VARCHAR,
        px_intent DOUBLE,          -- decision (reference) price, currency/share
        created_ts_ms BIGINT, status VARCHAR, filled_quantity DOUBLE, avg_fill_price DOUBLE,
        commission DOUBLE, broker_order_id VARCHAR, reject_reason VARCHAR, deny_reason VARCHAR,
        last_status_ts_ms BIGINT""",
    # fills deduplicated by exec_id; raw keeps the broker's payload (JSON)
    "exec_fill": """
        exec_id VARCHAR, client_order_id VARCHAR, broker_order_id VARCHAR, run_id VARCHAR,
        mode VARCHAR, strategy_id VARCHAR, instrument VARCHAR, side VARCHAR, quantity DOUBLE,
        price DOUBLE, commission DOUBLE, fees DOUBLE, currency VARCHAR, exchange VARCHAR,
        ts_ms BIGINT, raw VARCHAR""",
    # bridge's own book per strategy and mode (replaced as a whole when it changes)
    "exec_position": """
        strategy_id VARCHAR, mode VARCHAR, instrument VARCHAR, quantity DOUBLE, avg_cost DOUBLE,
        updated_ts_ms BIGINT""",
    "exec_account": """
        strategy_id VARCHAR, mode VARCHAR, ts_ms BIGINT, cash DOUBLE, market_value DOUBLE,
        equity DOUBLE""",
    # ORDER_SUBMIT / ORDER_CANCEL with success or failure, risk state changes, approvals, syncs
    "audit_log": """
        ts_ms BIGINT, kind VARCHAR, client_order_id VARCHAR, success BOOLEAN, error VARCHAR,
        actor VARCHAR, detail VARCHAR""",
    # market data rows refused on load, and sessions missing from the data
    "data_rejects": """
        datetime DATE, instrument VARCHAR, open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE,
        volume DOUBLE, reason VARCHAR, source VARCHAR""",
    "data_gaps": "kind VARCHAR, datetime DATE, instrument VARCHAR",
}
