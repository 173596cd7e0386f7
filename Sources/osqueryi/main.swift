import OsqueryShell
#if canImport(Glibc)
import Glibc
#endif

exit(OsqueryShellMain.run(CommandLine.arguments))
