; Spark Launcher installer for Windows on Arm (RTX Spark / Snapdragon). The bundle must be a
; NATIVE ARM64 build (ARM64 Python, win_arm64 wheels, llama-cpp-python built from source with
; CUDA 13.4+): an x64 bundle runs emulated on Arm, CPU-only. Build on the Arm machine:
;   iscc packaging\windows\spark-launcher-arm64.iss
#define AppArch "arm64"
#include "spark-launcher-common.iss"
