import ModelClientCommand

ModelClientCommand.main()
