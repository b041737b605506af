from asu_plugin.workflows.owner_classifier.workflow import main

main()
