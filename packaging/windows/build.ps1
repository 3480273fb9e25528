# Build the Spark Launcher bundle and installer on Windows (x64 or native ARM64).
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1 [-Cuda]
# Steps and prerequisites: packaging\windows\README.md. Run from the repository root.
param([switch]$Cuda)
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..\..")

$arch = if ($env:PROCESSOR_ARCHITECTURE -eq "ARM64") { "arm64" } else { "x64" }
$py = ".venv\Scripts\python.exe"
if (-not (Test-Path $py)) { py -3.12 -m venv .venv }
# Refuse an emulated x64 Python on an Arm PC: the bundle would be x64 and CPU-only.
$pyArch = & $py -c "import platform; print(platform.machine())"
if ($arch -eq "arm64" -and $pyArch -ne "ARM64") {
  throw "This Python is $pyArch running under emulation. Install the ARM64 Python from python.org (or 'py install 3.12-arm64') and recreate .venv."
}
& $py -m pip install -q --upgrade pip
if ($Cuda) {
  # CUDA 13.4+ (the first with Windows on Arm); sm_121 = GB10/N1X, 89 = Ada, 90 = Hopper, 120 = Blackwell.
  $env:CMAKE_ARGS = "-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=89;90;120;121"
  if ($arch -eq "arm64") { $env:CMAKE_ARGS += " -DGGML_OPENMP=OFF" }
  & $py -m pip install -q --no-binary llama-cpp-python "llama-cpp-python==0.3.36"
}
& $py -m pip install -q -c constraints.txt -e ".[package]"
& $py -m PyInstaller --noconfirm --log-level WARN packaging\spark-launcher.spec
& dist\spark-launcher\spark-launcher-cli.exe --version
$iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe"
$version = & $py -c "import launcher; print(launcher.__version__)"
& $iscc "/DAppVersion=$version" "packaging\windows\spark-launcher-$arch.iss"
