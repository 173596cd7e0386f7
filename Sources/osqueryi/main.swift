import OsqueryMain

OsqueryMain.main()
