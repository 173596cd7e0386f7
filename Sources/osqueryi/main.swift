import OsqueryShell

OsqueryShellMain.main()
