"""Reports: metrics tables and plotly figures for notebooks (plotly is imported on first use)."""
