from asu_plugin.workflows.calibrate.workflow import main

main()
