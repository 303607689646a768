"""The community office's desk: tasks, the household files, dispatch, spreadsheets in and out."""
