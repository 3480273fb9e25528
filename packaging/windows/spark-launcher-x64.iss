; Spark Launcher installer for Windows x64. Build on an x64 machine after `make package`
; (or packaging\windows\build.ps1):  iscc packaging\windows\spark-launcher-x64.iss
#define AppArch "x64"
#include "spark-launcher-common.iss"
