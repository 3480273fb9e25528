; Shared part of the Spark Launcher installers (included by spark-launcher-x64.iss and
; spark-launcher-arm64.iss, which only set AppArch).
; Input: the PyInstaller bundle dist\spark-launcher\ built on a native machine of that
; architecture (see packaging\windows\README.md). Output: dist\SparkLauncher-<ver>-<arch>-setup.exe

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "Spark Launcher"
#define AppExe "spark-launcher.exe"
#define BundleDir "..\..\dist\spark-launcher"

[Setup]
AppId={{6C1F7A52-3B8E-4E55-9C1D-5A2B7F0E9D41}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=Spark Launcher developers
DefaultDirName={autopf}\Spark Launcher
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; Per-user install by default (no admin prompt); the user may choose all users.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
OutputDir=..\..\dist
OutputBaseFilename=SparkLauncher-{#AppVersion}-{#AppArch}-setup
SetupIconFile=..\..\resources\icons\spark-launcher.ico
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
MinVersion=10.0.19041
#if AppArch == "arm64"
ArchitecturesAllowed=arm64
ArchitecturesInstallIn64BitMode=arm64
#else
; x64 only: an x64 build would run emulated (CPU-only) on an Arm PC, which has its own installer.
ArchitecturesAllowed=x64compatible and not arm64
ArchitecturesInstallIn64BitMode=x64compatible
#endif

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"; AppUserModelID: "SparkLauncher.App"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; Only the program folder: models, chats and settings live in the user's data folders and stay.
Type: filesandordirs; Name: "{app}"
