"""Resources as spreadsheets: the template a provider fills (template.py), reading a filled one
(read.py) into rows of the catalog's types (cells.py) checked as pushed rows are (rows.py), and
writing workbooks and CSV (write.py): templates, error reports, downloads."""
